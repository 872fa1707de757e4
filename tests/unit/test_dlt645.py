"""dlt645 frame codec: known wire frames, FE/noise skipping, truncation, checks, flags, ERR bits, requests."""

import dlt645
from portable import near, raises


def h(text):
    return bytes(int(x, 16) for x in text.split())


READ_ADDRESS = h("FE FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16")
READ_FWD = h("68 AA AA AA AA AA AA 68 11 04 33 33 34 33 AE 16")
REPLY_FWD = h("68 01 72 00 72 00 00 68 91 08 33 33 34 33 33 33 33 33 E7 16")
REPLY_FWD_BAD_CS = h("68 01 72 00 72 00 00 68 91 08 33 33 34 33 33 33 33 33 E8 16")
READ_VOLTAGE_A = h("68 AA AA AA AA AA AA 68 11 04 33 34 34 35 B1 16")
ABNORMAL = h("68 12 90 78 56 34 12 68 D1 01 35 8D 16")
CS_IS_16 = h("68 01 72 00 72 00 00 68 91 08 33 33 34 33 62 33 33 33 16 16")


def test_known_requests_encode_exactly():
    assert b"\xfe" * 4 + dlt645.encode("AAAAAAAAAAAA", 0x13) == READ_ADDRESS
    assert b"\xfe" * 4 + dlt645.read_address_request() == READ_ADDRESS
    assert dlt645.encode("AAAAAAAAAAAA", 0x11, h("00 00 01 00")) == READ_FWD
    assert dlt645.read_request("AAAAAAAAAAAA", 0x00010000) == READ_FWD
    assert dlt645.read_request(dlt645.WILDCARD, 0x02010100) == READ_VOLTAGE_A


def test_known_reply_decodes_exactly():
    f = dlt645.decode(REPLY_FWD)
    assert f.address == "000072007201"
    assert f.control == 0x91
    assert f.data == h("00 00 01 00 00 00 00 00")
    assert (f.start, f.end) == (0, len(REPLY_FWD))
    assert f.is_reply and not f.abnormal and not f.followup and f.err is None and f.error is None
    assert f.check() is f
    di, raw = dlt645.split_reply(f)
    assert di == 0x00010000
    assert dlt645.value(di, raw) == 0
    assert dlt645.encode("000072007201", 0x91, f.data) == REPLY_FWD


def test_bad_checksum_rejected():
    e = raises(dlt645.Corrupt, dlt645.decode, REPLY_FWD_BAD_CS)
    assert isinstance(e, dlt645.DLT645Error)


def test_bad_end_byte_and_length_rejected():
    raises(dlt645.Corrupt, dlt645.decode, REPLY_FWD[:-1] + b"\x17")
    too_long = h("68 01 72 00 72 00 00 68 91 C9") + bytes(203)
    raises(dlt645.Corrupt, dlt645.decode, too_long)
    # An abnormal reply carries exactly one ERR byte.
    raises(dlt645.Corrupt, dlt645.decode, dlt645.encode("123456789012", 0xD1, b"\x02\x02"))


def test_fe_preamble_and_noise_skipped():
    for lead in (b"", b"\xfe", b"\xfe" * 4, b"\xfe" * 17, b"\x00\x13\xff\xfe\xfe", b"\x16\x16\x68\x68\x16"):
        buf = lead + REPLY_FWD + b"\x55\xaa"
        f = dlt645.decode(buf)
        assert f.address == "000072007201"
        assert f.start == len(lead) and f.end == len(lead) + len(REPLY_FWD)


def test_noise_that_looks_like_a_frame_start_is_skipped():
    # 68 .. 68 with a plausible L: the bogus candidate fails its checksum, the real frame follows.
    fake = h("68 01 02 03 04 05 06 68 91 02")
    f = dlt645.decode(fake + REPLY_FWD)
    assert f.start == len(fake) and f.data[:4] == h("00 00 01 00")


def test_decode_from_an_offset_with_an_end():
    buf = REPLY_FWD + b"\xfe\xfe" + ABNORMAL + b"\x00"
    first = dlt645.decode(buf)
    second = dlt645.decode(buf, first.end)
    assert second.address == "123456789012" and second.end == len(buf) - 1
    raises(dlt645.Incomplete, dlt645.decode, buf, 0, len(REPLY_FWD) - 1)


def test_frame_end_found_from_length_not_0x16():
    f = dlt645.decode(CS_IS_16 + b"\x68")
    assert f.end == len(CS_IS_16)
    assert f.data[4] == 0x2F
    data = h("00 00 01 00 16 16 16 16")
    f = dlt645.decode(dlt645.encode("000072007201", 0x91, data))
    assert f.data == data


def test_every_truncation_is_incomplete():
    for frame in (REPLY_FWD, READ_ADDRESS, ABNORMAL):
        for n in range(len(frame)):
            raises(dlt645.Incomplete, dlt645.decode, frame[:n])
    raises(dlt645.Incomplete, dlt645.decode, b"")
    raises(dlt645.Incomplete, dlt645.decode, b"\xfe\xfe\x00\x42")


def test_abnormal_reply_and_err_names():
    f = dlt645.decode(ABNORMAL)
    assert f.address == "123456789012"
    assert f.control == 0xD1 and f.abnormal and f.is_reply and not f.followup
    assert f.function == 0x11
    assert f.err == 0x02
    e = f.error
    assert isinstance(e, dlt645.MeterError) and isinstance(e, dlt645.DLT645Error)
    assert e.err == 0x02 and e.reasons == ["no such data"]
    assert "no such data" in str(e)
    e = raises(dlt645.MeterError, f.check)
    assert e.reasons == ["no such data"] and e.address == "123456789012"


def test_err_bits():
    assert dlt645.err_reasons(0) == []
    assert dlt645.err_reasons(0x01) == ["other"]
    assert dlt645.err_reasons(0x04) == ["password/unauthorised"]
    assert dlt645.err_reasons(0x06) == ["no such data", "password/unauthorised"]
    assert dlt645.err_reasons(0x7F) == ["other", "no such data", "password/unauthorised", "baud not changeable",
                                        "too many year zones", "too many day slots", "too many tariffs"]
    e = dlt645.MeterError(0x48)
    assert e.err == 0x48 and e.reasons == ["baud not changeable", "too many tariffs"]


def test_followup_flag_and_read_next():
    f = dlt645.decode(h("68 01 72 00 72 00 00 68 B1 06 33 32 34 33 45 67 E4 16"))
    assert f.followup and not f.abnormal and f.function == 0x11
    di, part = dlt645.split_reply(f)
    assert di == 0x0001FF00 and part == h("12 34")
    req = dlt645.read_next_request("000072007201", 0x0001FF00, 2)
    assert req == h("68 01 72 00 72 00 00 68 12 05 33 32 34 33 35 CD 16")
    last = dlt645.decode(dlt645.encode("000072007201", 0x92, h("00 FF 01 00 56 02")))
    assert not last.followup and last.data[-1] == 2


def test_requests_are_not_replies():
    f = dlt645.decode(READ_FWD)
    assert not f.is_reply and not f.abnormal and f.address == "AAAAAAAAAAAA"
    assert f.data == h("00 00 01 00")
    # bits 6/5 on a request are not reply flags
    f = dlt645.decode(dlt645.encode("000072007201", 0x51, h("00 00 01 00")))
    assert not f.abnormal and not f.followup


def test_address_encoding_and_wildcards():
    assert dlt645.encode_address("000072007201") == h("01 72 00 72 00 00")
    assert dlt645.encode_address("AAAAAAAAAAAA") == b"\xaa" * 6
    assert dlt645.encode_address("999999999999") == b"\x99" * 6
    assert dlt645.encode_address("AAAAAA007201") == h("01 72 00 AA AA AA")
    assert dlt645.encode_address("aaaaaa007201") == h("01 72 00 AA AA AA")
    assert dlt645.decode_address(h("01 72 00 AA AA AA")) == "AAAAAA007201"
    for bad in ("00007200720", "0000720072011", "00007200720B", "00007200720 "):
        raises(ValueError, dlt645.encode_address, bad)
    assert dlt645.address_matches("AAAAAAAAAAAA", "000072007201")
    assert dlt645.address_matches("AAAAAA007201", "000072007201")
    assert not dlt645.address_matches("AAAAAA007202", "000072007201")
    assert dlt645.address_matches("000072007201", "000072007201")


def test_broadcast_time_sync_seconds_first():
    req = dlt645.time_sync_request((2025, 6, 1, 12, 34, 56))
    assert req == h("68 99 99 99 99 99 99 68 08 06 89 67 45 34 39 58 6E 16")
    f = dlt645.decode(req)
    assert f.address == dlt645.BROADCAST and f.control == 0x08
    assert f.data == h("56 34 12 01 06 25")


def test_write_request_with_password_and_operator():
    req = dlt645.write_request("000072007201", 0x04000102, h("56 34 12"), password="123456", level=2,
                               operator="12345678")
    assert req == h("68 01 72 00 72 00 00 68 14 0F 35 34 33 37 35 89 67 45 AB 89 67 45 89 67 45 2A 16")


def test_1997_read_request_and_reply():
    assert dlt645.read_1997_request("AAAAAAAAAAAA", 0x9010) == h("68 AA AA AA AA AA AA 68 01 02 43 C3 D5 16")
    f = dlt645.decode(h("68 01 72 00 72 00 00 68 81 06 43 C3 AB 89 67 45 22 16"))
    di, raw = dlt645.split_reply(f, 2)
    assert di == 0x9010 and f.function == 0x01
    assert near(dlt645.value(di, raw), 123456.78)
    assert dlt645.read_next_1997_request("000072007201", 0x9010)[8:12] == h("02 02 43 C3")


def test_encode_limits():
    raises(ValueError, dlt645.encode, "000072007201", 0x11, bytes(201))
    assert len(dlt645.encode("000072007201", 0x91, bytes(200))) == 212


def test_split_reply_short():
    f = dlt645.decode(dlt645.encode("000072007201", 0x91, h("00 01")))
    raises(dlt645.Corrupt, dlt645.split_reply, f)


def test_no_such_data_marks_a_standing_refusal():
    assert dlt645.decode(ABNORMAL).error.no_data
    assert dlt645.MeterError(dlt645.ERR_NO_DATA | 0x01).no_data
    assert not dlt645.MeterError(0x01).no_data and not dlt645.MeterError(0x04).no_data


def test_fixed_values_are_exact_integers_with_the_formats_decimals():
    # power 0.8957 kW: the integer 8957 and 4 decimals, no float on the way
    assert dlt645.fixed(0x02030000, h("57 89 00")) == (8957, 4)
    assert dlt645.fixed(0x02020100, h("34 12 80")) == (-1234, 3)
    assert dlt645.fixed(0x02010100, h("98 22")) == (2298, 1)
    assert dlt645.fixed(0x0001FF00, h("56 34 12 00 01 00 00 00")) == ([123456, 1], 2)
    assert dlt645.fixed(0xB611, h("30 02")) == (230, 0)
    raises(dlt645.Corrupt, dlt645.fixed, 0x02010100, h("9A 22"))
    raises(dlt645.Corrupt, dlt645.fixed, 0x02010100, h("98"))
    raises(dlt645.Corrupt, dlt645.fixed, 0x04000101, h("01 01 06 25"))  # a date is not a number
    raises(dlt645.DLT645Error, dlt645.fixed, 0x12345678, h("00"))
