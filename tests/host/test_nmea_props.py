"""NMEA parser properties: any input yields a Sentence or an NMEAError; valid sentences agree with pynmea2."""

import random

import pynmea2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nmea

TALKERS = ("GP", "BD", "GB", "GN", "GL", "GA", "GQ", "GI")
KINDS = ("RMC", "GGA", "GSA", "GSV", "GLL", "VTG")
# Field values that have tripped parsers: signs, exponents, non-finite numbers, separators, non-ASCII digits.
NASTY = ("", "nan", "inf", "-inf", "1e400", "-1", "+5", "0x1F", "1_0", ".", "-", " ", "  7 ", "99999999999999999999",
         "\u0663", "\u00e9", "\x00", "\t", "A", "N", "S", "W", "*", "$", "4060.0000", "9959.9999", "18000.0001",
         "240000", "235960.5", "000000", "320199", "010099", "3.", ".5", "1.2.3", "1e-5", "\ud800", ",,,")
SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Draw:
    """The slice of random.Random's interface the generators use, fed by hypothesis so failures shrink."""

    def __init__(self, draw):
        self._draw = draw

    def choice(self, seq):
        return self._draw(st.sampled_from(seq))

    def randint(self, a, b):
        return self._draw(st.integers(a, b))

    def random(self):
        return self._draw(st.floats(0.0, 1.0, exclude_max=True))


# -- valid sentences ---------------------------------------------------------------------------------------------


def _opt(r, text, p_empty=0.1):
    return "" if r.random() < p_empty else text


def _time(r):
    digits = r.choice(("", ".0", ".00", ".000", ".5", ".25"))
    if digits and len(digits) > 2 and digits not in (".25",):
        digits = "." + "".join(str(r.randint(0, 9)) for _ in digits[1:])
    return _opt(r, "%02d%02d%02d%s" % (r.randint(0, 23), r.randint(0, 59), r.randint(0, 59), digits))


def _coord(r, deg_digits, deg_max):
    places = r.randint(1, 6)
    ticks = r.randint(0, 60 * 10**places - 1)
    value = "%0*d%02d.%0*d" % (deg_digits, r.randint(0, deg_max), ticks // 10**places, places, ticks % 10**places)
    return value, r.choice(("N", "S") if deg_digits == 2 else ("E", "W"))


def _num(r, lo, hi, places):
    return "%.*f" % (places, lo + (hi - lo) * r.random())


def _date(r):
    return _opt(r, "%02d%02d%02d" % (r.randint(1, 28), r.randint(1, 12), r.randint(0, 99)))


def valid_body(r):
    """A random valid sentence body (between '$' and '*') of any supported kind and talker."""
    # Any two capitals, except a leading P: that marks a proprietary sentence.
    talker = r.choice(TALKERS) if r.random() < 0.9 else r.choice("ABCDEFGHIJKLMNOQRSTUVWXYZ") + chr(r.randint(65, 90))
    kind = r.choice(KINDS)
    lat, ns = _coord(r, 2, 89)
    lon, ew = _coord(r, 3, 179)
    if r.random() < 0.1:  # no position yet: receivers leave all four fields empty
        lat = ns = lon = ew = ""
    if kind == "GGA":
        f = [_time(r), lat, ns, lon, ew, str(r.randint(0, 8)), _opt(r, "%02d" % r.randint(0, 40)),
             _opt(r, _num(r, 0.5, 99.99, r.randint(1, 2))), _opt(r, _num(r, -100, 9000, r.randint(0, 3))), "M",
             _opt(r, _num(r, -99, 99, 1)), "M", "", ""]
    elif kind == "RMC":
        f = [_time(r), r.choice(("A", "V")), lat, ns, lon, ew, _opt(r, _num(r, 0, 999, 2)),
             _opt(r, _num(r, 0, 359.99, 2)), _date(r), "", ""]
        version = r.randint(0, 2)  # NMEA 2.2, 2.3 (mode), 4.1 (navigational status)
        if version:
            f.append(r.choice("ADEN"))
        if version == 2:
            f.append(r.choice("SCUV"))
    elif kind == "GLL":
        f = [lat, ns, lon, ew, _time(r), r.choice(("A", "V")), r.choice("ADN")]
    elif kind == "GSA":
        used = ["%02d" % r.randint(1, 237) for _ in range(r.randint(0, 12))]
        f = [r.choice("AM"), str(r.randint(1, 3))] + used + [""] * (12 - len(used))
        f += [_opt(r, _num(r, 0.5, 99.99, 2)) for _ in range(3)]
        if r.random() < 0.5:
            f.append(str(r.randint(1, 6)))
    elif kind == "GSV":
        total = r.randint(1, 4)
        f = [str(total), str(r.randint(1, total)), "%02d" % r.randint(0, 16)]
        for _ in range(r.randint(0, 4)):
            f += ["%02d" % r.randint(1, 63), _opt(r, "%02d" % r.randint(0, 90)), _opt(r, "%03d" % r.randint(0, 359)),
                  _opt(r, "%02d" % r.randint(0, 55), 0.3)]
        if r.random() < 0.5:
            f.append("%X" % r.randint(1, 15))
    else:
        f = [_opt(r, _num(r, 0, 359.99, 2)), "T", "", "M", _opt(r, _num(r, 0, 999, 2)), "N",
             _opt(r, _num(r, 0, 1800, 2)), "K", r.choice("ADN")]
    return ",".join([talker + kind] + f)


# -- checks ------------------------------------------------------------------------------------------------------


def _near(a, b, eps=1e-6):
    return abs(a - b) <= eps


def outcome(x):
    """Parse x; a Sentence must be self-consistent, and nothing but an NMEAError may escape."""
    try:
        s = nmea.parse(x)
    except nmea.NMEAError:
        return None
    assert isinstance(s, nmea.Sentence)
    assert s.kind in KINDS and len(s.talker) == 2
    assert s.lat is None or -90 <= s.lat <= 90
    assert s.lon is None or -180 <= s.lon <= 180
    assert s.fix in (None, True, False)
    assert s.nsat is None or s.nsat >= 0
    for v in (s.hdop, s.pdop, s.vdop, s.alt, s.geoid_sep, s.speed_knots, s.speed_kmh, s.course, s.mag_var):
        assert v is None or v - v == 0, v  # finite: no nan or inf gets through
    if s.utc is not None:
        assert 0 <= s.utc[0] <= 23 and 0 <= s.utc[1] <= 59 and 0 <= s.utc[2] < 61
    if s.date is not None:
        assert 2000 <= s.date[0] <= 2099 and 1 <= s.date[1] <= 12 and 1 <= s.date[2] <= 31
    return s


def _same_time(ours, theirs):
    if theirs is None:
        return ours is None
    return (ours[0], ours[1]) == (theirs.hour, theirs.minute) and _near(
        ours[2], theirs.second + theirs.microsecond / 1e6)


def _opt_float(text):
    return float(text) if text not in ("", None) else None


def _same_opt(ours, theirs):
    return ours is None if theirs is None else ours is not None and _near(ours, theirs)


def agree_with_pynmea2(line):
    """Both parsers read the same values from a valid sentence."""
    s = nmea.parse(line)
    p = pynmea2.parse(line, check=True)
    assert s.talker == p.talker and s.kind == p.sentence_type
    if s.kind in ("GGA", "RMC", "GLL"):
        if s.lat is None:
            assert p.lat == "" and p.lon == ""
        else:
            assert _near(s.lat, p.latitude) and _near(s.lon, p.longitude), (s.lat, s.lon, p.latitude, p.longitude)
        assert _same_time(s.utc, p.timestamp), (s.utc, p.timestamp)
    if s.kind == "GGA":
        assert s.quality == p.gps_qual and s.fix == (p.gps_qual > 0)
        assert s.nsat == (int(p.num_sats) if p.num_sats else None)
        assert _same_opt(s.hdop, _opt_float(p.horizontal_dil))
        assert _same_opt(s.alt, p.altitude)
    elif s.kind == "RMC":
        assert s.status == p.status and s.fix == (p.status == "A")
        d = p.datestamp
        assert (s.date is None) if d is None else (s.date[0] % 100, s.date[1], s.date[2]) == (d.year % 100, d.month,
                                                                                             d.day)
        assert _same_opt(s.speed_knots, p.spd_over_grnd) and _same_opt(s.course, p.true_course)
    elif s.kind == "GLL":
        assert s.status == p.status
    elif s.kind == "GSA":
        assert s.mode == int(p.mode_fix_type) and s.fix == (int(p.mode_fix_type) >= 2)
        assert s.prns == [int(getattr(p, "sv_id%02d" % i)) for i in range(1, 13) if getattr(p, "sv_id%02d" % i)]
        assert _same_opt(s.pdop, _opt_float(p.pdop)) and _same_opt(s.hdop, _opt_float(p.hdop))
        assert _same_opt(s.vdop, _opt_float(p.vdop))
    elif s.kind == "GSV":
        assert (s.msg_total, s.msg_num, s.in_view) == (int(p.num_messages), int(p.msg_num), int(p.num_sv_in_view))
        # pynmea2 maps fields by position, so a trailing signal id lands in a satellite slot unless all 4 are there.
        if s.signal_id is None or len(s.satellites) == 4:
            theirs = [int(getattr(p, "sv_prn_num_%d" % i)) for i in range(1, 5)
                      if getattr(p, "sv_prn_num_%d" % i, "")]
            assert [sat[0] for sat in s.satellites] == theirs
    else:
        assert _same_opt(s.course, p.true_track) and _same_opt(s.speed_kmh, p.spd_over_grnd_kmph)
        kts = p.spd_over_grnd_kts
        assert _same_opt(s.speed_knots, float(kts) if kts is not None else None)
    return s


# -- mutation ----------------------------------------------------------------------------------------------------


def mutate(r, body):
    """Damage a valid body in one or a few ways; the caller decides whether the checksum is fixed up."""
    for _ in range(r.randint(1, 3)):
        op = r.randint(0, 7)
        fields = body.split(",")
        i = r.randint(0, len(fields) - 1)
        if op == 0 and body:
            k = r.randint(0, len(body) - 1)
            body = body[:k] + chr(r.choice((r.randint(32, 126), r.randint(0, 31), r.randint(128, 0x10FFFF)))) + \
                body[k + 1:]
        elif op == 1 and body:
            k = r.randint(0, len(body) - 1)
            body = body[:k] + body[k + 1:]
        elif op == 2:
            fields[i] = r.choice(NASTY)
            body = ",".join(fields)
        elif op == 3:
            del fields[i]
            body = ",".join(fields)
        elif op == 4:
            fields.insert(i, r.choice(NASTY))
            body = ",".join(fields)
        elif op == 5:
            j = r.randint(0, len(fields) - 1)
            fields[i], fields[j] = fields[j], fields[i]
            body = ",".join(fields)
        elif op == 6:
            body = body[: r.randint(0, len(body))]
        else:
            body = body + "," * r.randint(1, 4)
    return body


def _frame_any(body):
    # Surrogates and other unencodable characters still get a (wrong-looking but harmless) checksum.
    return "$%s*%02X" % (body, nmea.checksum(body) & 0xFF)


def damaged_line(r):
    """One hostile input: mutated sentence (checksum fixed up or not), raw noise, or a non-string object."""
    k = r.randint(0, 19)
    if k < 12:
        body = mutate(r, valid_body(r))
        line = _frame_any(body) if r.random() < 0.7 else "$%s*%02X" % (body, r.randint(0, 255))
    elif k < 15:
        line = "".join(chr(r.randint(32, 126)) for _ in range(r.randint(0, 90)))
        if r.random() < 0.5:
            line = _frame_any(line)
    elif k < 17:
        return bytes(r.randint(0, 255) for _ in range(r.randint(0, 90)))
    elif k < 19:
        line = "".join(chr(r.randint(0, 0x10FFFF)) for _ in range(r.randint(0, 30)))
    else:
        return r.choice((None, 0, 1.5, [], ("$GPGSV,1,1,00*79",), memoryview(b"$GPGSV,1,1,00*79")))
    line += r.choice(("", "", "\r\n", "\n", " "))
    if r.random() < 0.3:
        try:
            return line.encode()
        except UnicodeEncodeError:
            return line
    return line


# -- tests -------------------------------------------------------------------------------------------------------


def test_seeded_hostile_inputs_give_sentence_or_nmea_error():
    r = random.Random(0x645)
    n = parsed = 0
    for _ in range(110_000):
        outcome(damaged_line(r))
        n += 1
    for _ in range(8_000):  # the same ASCII line must give the same result as str and as bytes
        line = _frame_any(mutate(r, valid_body(r)))
        a, b = outcome(line), outcome(line.encode("ascii", "replace"))
        n += 2
        if line.isascii():
            assert (a is None) == (b is None)
            if a is not None:
                parsed += 1
                assert vars(a) == vars(b)
    assert n >= 100_000
    assert parsed > 100  # mutations with a fixed-up checksum exercise the field parsers, not only the checksum


def test_seeded_valid_sentences_agree_with_pynmea2():
    r = random.Random(4108)
    kinds = {}
    for _ in range(12_000):
        body = valid_body(r)
        line = nmea.frame(body)
        assert len(line) <= 82, line
        form = r.choice((line, line + "\r\n", (line + "\r\n").encode()))
        s = agree_with_pynmea2(line)
        t = nmea.parse(form)
        assert vars(s) == vars(t)
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    assert sorted(kinds) == sorted(KINDS) and min(kinds.values()) > 1000


@st.composite
def valid_lines(draw):
    return nmea.frame(valid_body(_Draw(draw)))


@st.composite
def damaged_lines(draw):
    return damaged_line(_Draw(draw))


@SETTINGS
@given(valid_lines())
def test_hypothesis_valid_sentences_agree_with_pynmea2(line):
    agree_with_pynmea2(line)


@SETTINGS
@given(st.one_of(st.text(max_size=100), st.binary(max_size=100)))
def test_hypothesis_any_text_or_bytes(x):
    outcome(x)


@SETTINGS
@given(st.text(alphabet=st.sampled_from("$*,.-+0123456789ABCDEFGLMNPRSTVWxe \r\n\x00\u00e9"), max_size=90))
def test_hypothesis_nmea_alphabet_with_valid_checksum(body):
    outcome(_frame_any(body))
    outcome("$GN" + body)


@SETTINGS
@given(damaged_lines())
def test_hypothesis_damaged_sentences(x):
    outcome(x)
