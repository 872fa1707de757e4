"""NMEA parser: hand-checked sentences of every supported kind and talker, checksums, malformed input."""

from portable import near, raises

import nmea

EPS = 1e-7  # degrees; MicroPython's float parsing is a few ulp less exact than CPython's


def test_rmc_beidou_nmea41_hohhot():
    s = nmea.parse("$GNRMC,023044.000,A,4050.5500,N,11144.9400,E,0.52,84.30,150624,,,A,V*3A")
    assert s.talker == "GN" and s.kind == "RMC"
    assert near(s.lat, 40.8425, EPS) and near(s.lon, 111.749, EPS)
    assert s.fix is True and s.status == "A"
    assert s.utc[0] == 2 and s.utc[1] == 30 and near(s.utc[2], 44.0)
    assert s.date == (2024, 6, 15)
    assert near(s.speed_knots, 0.52) and near(s.course, 84.3)
    assert s.mag_var is None
    assert s.faa_mode == "A" and s.nav_status == "V"
    assert s.nsat is None and s.hdop is None and s.alt is None and s.quality is None


def test_gga_hohhot():
    s = nmea.parse("$GNGGA,023044.000,4050.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,*6C")
    assert s.talker == "GN" and s.kind == "GGA"
    assert near(s.lat, 40.8425, EPS) and near(s.lon, 111.749, EPS)
    assert s.quality == 1 and s.fix is True
    assert s.nsat == 14 and near(s.hdop, 0.79) and near(s.alt, 1065.3) and near(s.geoid_sep, -26.1)
    assert s.utc[:2] == (2, 30) and near(s.utc[2], 44.0)
    assert s.date is None and s.speed_knots is None


def test_gga_southern_glonass_dgps():
    s = nmea.parse("$GLGGA,080000.00,3352.0800,S,15112.6000,E,2,06,1.8,39.0,M,22.1,M,3.0,0001*71")
    assert s.talker == "GL"
    assert near(s.lat, -33.868, EPS) and near(s.lon, 151.21, EPS)
    assert s.quality == 2 and s.fix and s.nsat == 6 and near(s.hdop, 1.8) and near(s.alt, 39.0)


def test_gga_unknown_talker_equator_negative_altitude():
    s = nmea.parse("$INGGA,235959.99,0000.0000,N,00000.0000,E,6,04,2.5,-12.5,M,,,,*31")
    assert s.talker == "IN" and s.kind == "GGA"
    assert s.lat == 0.0 and s.lon == 0.0
    assert s.quality == 6 and s.fix and s.nsat == 4 and near(s.alt, -12.5)
    assert s.utc[:2] == (23, 59) and near(s.utc[2], 59.99, 1e-6)
    assert s.geoid_sep is None


def test_gsa_beidou_legacy_prns():
    s = nmea.parse("$BDGSA,A,3,201,202,203,206,209,210,,,,,,,1.32,0.79,1.06*14")
    assert s.talker == "BD" and s.kind == "GSA"
    assert s.op_mode == "A" and s.mode == 3 and s.fix is True
    assert s.prns == [201, 202, 203, 206, 209, 210]
    assert near(s.pdop, 1.32) and near(s.hdop, 0.79) and near(s.vdop, 1.06)
    assert s.system_id is None and s.lat is None and s.nsat is None


def test_gsa_nmea41_system_id():
    s = nmea.parse("$GNGSA,A,3,07,10,19,22,27,,,,,,,,1.32,0.79,1.06,4*06")
    assert s.prns == [7, 10, 19, 22, 27] and s.system_id == 4 and s.mode == 3
    s = nmea.parse("$GNGSA,A,3,05,13,15,20,,,,,,,,,1.32,0.79,1.06,1*09")
    assert s.prns == [5, 13, 15, 20] and s.system_id == 1


def test_gsa_no_fix():
    s = nmea.parse(nmea.frame("GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,4"))
    assert s.mode == 1 and s.fix is False and s.prns == [] and near(s.hdop, 99.99)


def test_gsv_beidou_signal_id():
    s = nmea.parse("$GBGSV,3,1,11,01,45,123,40,02,38,234,37,03,52,198,41,04,33,121,35,1*79")
    assert s.talker == "GB" and s.kind == "GSV"
    assert s.msg_total == 3 and s.msg_num == 1 and s.in_view == 11 and s.signal_id == 1
    assert s.satellites == [(1, 45, 123, 40), (2, 38, 234, 37), (3, 52, 198, 41), (4, 33, 121, 35)]
    assert s.fix is None and s.nsat is None


def test_gsv_padded_last_message_and_empty():
    s = nmea.parse("$GBGSV,3,3,11,42,08,317,,,,,,,,,,,,,,1*4D")
    assert s.msg_num == 3 and s.satellites == [(42, 8, 317, None)] and s.signal_id == 1
    s = nmea.parse("$GPGSV,1,1,00*79")
    assert s.in_view == 0 and s.satellites == [] and s.signal_id is None


def test_rmc_nmea23_western():
    s = nmea.parse("$GPRMC,161229.487,A,3723.2475,N,12158.3416,W,0.13,309.62,120598,,*10")
    assert s.talker == "GP"
    assert near(s.lat, 37.387458333, EPS) and near(s.lon, -121.97236, EPS)
    assert s.date == (2098, 5, 12)  # two-digit years are read as 20yy
    assert near(s.utc[2], 29.487, 1e-6)
    assert s.faa_mode is None and s.nav_status is None


def test_rmc_extremes_and_magnetic_variation():
    s = nmea.parse("$GNRMC,235959.000,A,8959.9999,S,17959.9999,W,999.99,359.99,311299,12.3,W,D,S*44")
    assert near(s.lat, -89.999998333, EPS) and near(s.lon, -179.999998333, EPS)
    assert near(s.mag_var, -12.3) and s.date == (2099, 12, 31)
    assert s.faa_mode == "D" and s.nav_status == "S"


def test_gll_southern_western_galileo():
    s = nmea.parse("$GAGLL,3436.2000,S,05822.9000,W,134512.00,A,A*73")
    assert s.talker == "GA" and s.kind == "GLL"
    assert near(s.lat, -34.603333333, EPS) and near(s.lon, -58.381666667, EPS)
    assert s.utc[:2] == (13, 45) and near(s.utc[2], 12.0) and s.fix is True and s.faa_mode == "A"


def test_vtg_qzss_and_empty():
    s = nmea.parse("$GQVTG,84.30,T,,M,0.52,N,0.96,K,A*0B")
    assert s.talker == "GQ" and s.kind == "VTG"
    assert near(s.course, 84.3) and near(s.speed_knots, 0.52) and near(s.speed_kmh, 0.96) and s.faa_mode == "A"
    s = nmea.parse("$GNVTG,,T,,M,,N,,K,N*32")
    assert s.course is None and s.speed_knots is None and s.faa_mode == "N"


def test_no_fix_sentences():
    s = nmea.parse("$GNGGA,,,,,,0,00,99.99,,,,,,*56")
    assert s.fix is False and s.quality == 0 and s.nsat == 0 and near(s.hdop, 99.99)
    assert s.lat is None and s.lon is None and s.alt is None and s.utc is None
    s = nmea.parse("$GNRMC,,V,,,,,,,,,,N,V*37")
    assert s.fix is False and s.status == "V" and s.lat is None and s.date is None
    assert s.faa_mode == "N" and s.nav_status == "V"
    s = nmea.parse("$BDRMC,120000.000,V,,,,,,,010125,,,N*58")
    assert s.talker == "BD" and not s.fix and s.date == (2025, 1, 1) and s.utc[:2] == (12, 0)
    s = nmea.parse("$GNGLL,,,,,,V,N*7A")
    assert s.fix is False and s.lat is None


def test_every_talker_and_kind():
    bodies = (
        "RMC,023044.000,A,4050.5500,N,11144.9400,E,0.52,84.30,150624,,,A,V",
        "GGA,023044.000,4050.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,",
        "GSA,A,3,01,02,03,04,,,,,,,,,1.32,0.79,1.06",
        "GSV,1,1,01,01,45,123,40",
        "GLL,4050.5500,N,11144.9400,E,023044.000,A,A",
        "VTG,84.30,T,,M,0.52,N,0.96,K,A",
    )
    for talker in ("GP", "BD", "GB", "GN", "GL", "GA", "GQ", "GI", "ZZ"):
        for body in bodies:
            s = nmea.parse(nmea.frame(talker + body))
            assert s.talker == talker and s.kind == body[:3]
            if s.lat is not None:
                assert near(s.lat, 40.8425, EPS) and near(s.lon, 111.749, EPS)


def test_bytes_str_line_endings_whitespace():
    line = "$GNGGA,023044.000,4050.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,*6C"
    for form in (line, line + "\r\n", line + "\n", "  " + line + " \r\n", "\t" + line):
        for x in (form, form.encode(), bytearray(form.encode())):
            s = nmea.parse(x)
            assert s.talker == "GN" and s.nsat == 14 and near(s.lat, 40.8425, EPS)
            assert isinstance(s.talker, str) and isinstance(s.kind, str)


def test_lowercase_checksum_digits():
    assert nmea.parse("$GNGGA,023044.000,4050.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,*6c").nsat == 14


def test_frame_and_checksum():
    assert nmea.checksum("GPGSV,1,1,00") == 0x79
    assert nmea.frame("GNGGA,,,,,,0,00,99.99,,,,,,") == "$GNGGA,,,,,,0,00,99.99,,,,,,*56"


def test_bad_checksum():
    for line in (
        "$GNGGA,,,,,,0,00,99.99,,,,,,*57",
        "$GNRMC,,V,,,,,,,,,,N,V*73",
        "$GNGGA,023044.000,4050.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,*00",
        "$GNGGA,023044.000,4050.5501,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,*6C",  # one digit changed
        b"$GPGSV,1,1,00*97",
    ):
        e = raises(nmea.ChecksumError, nmea.parse, line)
        assert isinstance(e, nmea.NMEAError)


def test_missing_or_malformed_checksum_is_format_error():
    for line in (
        "$GNGGA,,,,,,0,00,99.99,,,,,,",
        "$GNGGA,,,,,,0,00,99.99,,,,,,*5",
        "$GNGGA,,,,,,0,00,99.99,,,,,*56,",
        "$GNGGA,,,,,,0,00,99.99,,,,,,*G6",
        "$GNGGA,,,,,,0,00,99.99,,,,,,*+6",
        "GNGGA,,,,,,0,00,99.99,,,,,,*56",
        "$GNGGA,,,,,,0,00,99.99,,,,,,*56*56",
    ):
        raises(nmea.FormatError, nmea.parse, line)


def test_length_limit():
    head, tail = "GNRMC,023044.", ",A,4050.5500,N,11144.9400,E,0.52,84.30,150624,,,A,V"
    pad = 82 - len(nmea.frame(head + tail))
    line = nmea.frame(head + "0" * pad + tail)
    assert len(line) == 82 and nmea.parse(line + "\r\n").fix
    line = nmea.frame(head + "0" * (pad + 1) + tail)
    assert len(line) == 83
    raises(nmea.FormatError, nmea.parse, line)


def test_malformed_fields_with_valid_checksum():
    for body in (
        "GNGGA,023044.000,4050.5500,X,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,",  # hemisphere
        "GNGGA,023044.000,4050.5500,,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,",  # hemisphere missing
        "GNGGA,023044.000,4060.0000,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,",  # 60 minutes
        "GNGGA,023044.000,9100.0000,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,",  # > 90 degrees
        "GNGGA,023044.000,4050.5500,N,18100.0000,E,1,14,0.79,1065.3,M,-26.1,M,,",  # > 180 degrees
        "GNGGA,023044.000,-050.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,",  # sign
        "GNGGA,023044.000,50.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,",  # no degrees
        "GNGGA,023044.000,40x0.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,",
        "GNGGA,246000.000,4050.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,",  # hour 24
        "GNGGA,0230,4050.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,",  # short time
        "GNGGA,023044.000,4050.5500,N,11144.9400,E,x,14,0.79,1065.3,M,-26.1,M,,",  # quality
        "GNGGA,023044.000,4050.5500,N,11144.9400,E,1,-4,0.79,1065.3,M,-26.1,M,,",  # nsat
        "GNGGA,023044.000,4050.5500,N,11144.9400,E,1,14,nan,1065.3,M,-26.1,M,,",  # hdop
        "GNGGA,023044.000,4050.5500,N,11144.9400,E,1,14,0.79,inf,M,-26.1,M,,",  # altitude
        "GNGGA,023044.000,4050.5500,N,11144.9400,E,1,14,0.79",  # too few fields
        "GNRMC,023044.000,X,4050.5500,N,11144.9400,E,0.52,84.30,150624,,,A,V",  # status
        "GNRMC,023044.000,A,4050.5500,N,11144.9400,E,0.52,84.30,320624,,,A,V",  # day 32
        "GNRMC,023044.000,A,4050.5500,N,11144.9400,E,0.52,84.30,151324,,,A,V",  # month 13
        "GNRMC,023044.000,A,4050.5500,N,11144.9400,E,0.52,84.30,1506,,,A,V",  # short date
        "GNRMC,023044.000,A,4050.5500,N,11144.9400,E,0.52,84.30,150624,3.1,Q,A,V",  # variation side
        "GNGSA,A,3,01,02,03,04,,,,,,,,1.32,0.79,1.06",  # 11 prn fields
        "GNGSA,A,4,01,02,03,04,,,,,,,,,1.32,0.79,1.06",  # fix mode 4
        "GNGSA,A,3,01,02,03,04,,,,,,,,,1.32,0.79,1.06,G",  # system id
        "GBGSV,3,1,11,01,45,123,40,02,38",  # partial satellite group
        "GBGSV,3,4,11,01,45,123,40",  # message 4 of 3
        "GBGSV,,1,11,01,45,123,40",
        "GBGSV,1,1",
        "GAGLL,3436.2000,S,05822.9000,W,134512.00,Q,A",  # status
        "GQVTG,84.30,T,,M,0.52,N,0.96",  # too few fields
        "GQVTG,84.30,0.52,0.96,K,,,,,",  # old format without unit letters
        "gnGGA,,,,,,0,00,99.99,,,,,,",  # lower-case address
        "GNGG,,,,,,0,00,99.99,,,,,,",
        "GN1GA,,,,,,0,00,99.99,,,,,,",
        "",
        ",,,",
    ):
        raises(nmea.FormatError, nmea.parse, nmea.frame(body))


def test_unsupported_kinds_are_skippable():
    for line in (
        nmea.frame("GPZDA,160012.71,11,03,2004,-1,00"),
        nmea.frame("GNTXT,01,01,01,ANTENNA OPEN"),
        nmea.frame("PQTMVER,MODULE_L76KB,2022/01/01"),
        nmea.frame("BDGBS,023044.000,1.2,0.8,2.1,,,,"),
    ):
        e = raises(nmea.UnsupportedError, nmea.parse, line)
        assert isinstance(e, nmea.NMEAError)


def test_garbage_raises_only_nmea_errors():
    for x in (
        "",
        "   \r\n",
        "$",
        "*",
        "$*00",
        "$$GNGGA,,,,,,0,00,99.99,,,,,,*56",
        "\u00e9\u4e2d\u6587",
        "$GNGGA,\u00e9*00",
        "$GNGGA,\ud7ff*00",
        "$GNGGA,,,,,,0,00,99.99,,,,,,*\u00e9\u00e9",
        b"\xff\xfe",
        b"$GNGGA,\xe9*C5",
        b"$GPGSV,1,1,00*\xff\xff",
        b"$GPGSV,1,1,00*\x00\x00",
        "$GPGSV,1,1,00\x00*79",
        "x" * 500,
        b"$" + b"," * 200 + b"*00",
        None,
        42,
        3.5,
        ["$GPGSV,1,1,00*79"],
    ):
        raises(nmea.NMEAError, nmea.parse, x)


def test_error_hierarchy():
    for cls in (nmea.ChecksumError, nmea.FormatError, nmea.UnsupportedError):
        assert issubclass(cls, nmea.NMEAError)
    assert issubclass(nmea.NMEAError, Exception)
    assert not issubclass(nmea.UnsupportedError, nmea.FormatError)


def test_mutated_lines_raise_only_nmea_errors():
    # A small fuzz that runs on both runtimes, so a MicroPython-only exception type would show up here.
    bases = (
        "GNRMC,023044.000,A,4050.5500,N,11144.9400,E,0.52,84.30,150624,,,A,V",
        "GNGGA,023044.000,4050.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,",
        "GNGSA,A,3,07,10,19,22,27,,,,,,,,1.32,0.79,1.06,4",
        "GBGSV,3,1,11,01,45,123,40,02,38,234,37,03,52,198,41,04,33,121,35,1",
        "GAGLL,3436.2000,S,05822.9000,W,134512.00,A,A",
        "GQVTG,84.30,T,,M,0.52,N,0.96,K,A",
    )
    nasty = (",", ".", "-", "+", "e", "n", "a", "i", "f", "*", "$", "\x00", "\u00e9", "9", "0", " ", "A", "P", "x",
             "nan", "inf", "1e999", ",,", "")
    state = 12345
    parsed = failed = 0
    for i in range(3000):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        body = bases[state % len(bases)]
        for _ in range(1 + (state >> 8) % 3):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            k = (state >> 4) % len(body)
            cut = 1 if (state >> 20) % 4 else 0
            body = body[:k] + nasty[(state >> 12) % len(nasty)] + body[k + cut:]
        line = nmea.frame(body) if i % 4 else "$" + body + "*00"
        if i % 3 == 0:
            line = line.encode()
        try:
            nmea.parse(line)
            parsed += 1
        except nmea.NMEAError:
            failed += 1
    assert parsed > 100 and failed > 100
