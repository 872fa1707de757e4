"""dlt645 values: every DI of the table decoded from hand-checked BCD bytes, signs, and the encoders."""

import dlt645
import dlt645_values
from portable import near, raises


def h(text):
    return bytes(int(x, 16) for x in text.split())


# DI, value bytes (lowest first, 0x33 removed), expected value: worked out by hand from the formats.
CASES = (
    (0x00000000, "56 34 12 00", 1234.56),
    (0x00000000, "56 34 12 80", -1234.56),  # combined total is signed
    (0x00010000, "78 56 34 12", 123456.78),
    (0x00010000, "00 00 00 00", 0.0),
    (0x00010100, "01 00 00 00", 0.01),
    (0x00010200, "00 01 00 00", 1.0),
    (0x00010300, "99 99 99 99", 999999.99),
    (0x00010400, "00 00 10 00", 1000.0),
    (0x00020000, "50 01 00 00", 1.5),
    (0x02010100, "98 22", 229.8),
    (0x02010200, "01 23", 230.1),
    (0x02010300, "04 23", 230.4),
    (0x02020100, "34 12 80", -1.234),
    (0x02020200, "00 05 00", 0.5),
    (0x02020300, "56 34 12", 123.456),
    (0x02030000, "23 41 00", 0.4123),
    (0x02030100, "23 41 80", -0.4123),
    (0x02030200, "99 99 79", 79.9999),
    (0x02030300, "00 00 00", 0.0),
    (0x02060000, "80 09", 0.98),
    (0x02060000, "00 90", -1.0),
    (0x02800002, "01 50", 50.01),
    (0x04000101, "00 01 06 25", "2025-06-01"),  # WW 00: a Sunday
    (0x04000101, "04 19 11 26", "2026-11-19"),
    (0x04000102, "56 34 12", "12:34:56"),
    (0x04000401, "01 72 00 72 00 00", "000072007201"),
    (0x04000402, "90 78 56 34 12 00", "001234567890"),
    (0x9010, "78 56 34 12", 123456.78),
    (0xB611, "20 02", 220),
    (0xB621, "34 12", 12.34),
    (0xB630, "56 34 12", 12.3456),
    (0xC010, "06 01 01 00", "2000-01-01"),
    (0xC011, "00 00 00", "00:00:00"),
    (0xC032, "01 00 00 00 00 00", "000000000001"),
)


def test_every_di_in_the_table_has_a_case():
    covered = set(c[0] for c in CASES) | {0x0001FF00}
    for di in dlt645.table():
        assert di in covered, "%08X has no hand-checked case" % di


def test_values_from_hand_checked_bytes():
    for di, text, want in CASES:
        got = dlt645.value(di, h(text))
        if isinstance(want, str):
            assert got == want, "%08X: %r != %r" % (di, got, want)
        else:
            assert near(got, want, 1e-9), "%08X: %r != %r" % (di, got, want)


def test_values_encode_back_to_the_same_bytes():
    for di, text, want in CASES:
        assert dlt645.encode_value(di, want) == h(text), "%08X %r" % (di, want)


def test_block_counts_values_from_the_length():
    raw = h("78 56 34 12 00 00 00 01 01 00 00 00 99 99 99 99 00 00 10 00")
    got = dlt645.value(0x0001FF00, raw)
    assert len(got) == 5
    for a, b in zip(got, (123456.78, 10000.0, 0.01, 999999.99, 1000.0)):
        assert near(a, b)
    assert len(dlt645.value(0x0001FF00, raw[:8])) == 2
    assert dlt645.encode_value(0x0001FF00, got) == raw
    raises(dlt645.Corrupt, dlt645.value, 0x0001FF00, raw[:7])
    raises(dlt645.Corrupt, dlt645.value, 0x0001FF00, b"")


def test_sign_is_the_top_bit_of_the_last_byte():
    assert near(dlt645.value(0x02020100, h("34 12 80")), -1.234)
    assert near(dlt645.value(0x02020100, h("34 12 00")), 1.234)  # not 801.234
    assert dlt645.encode_value(0x02020100, -1.234) == h("34 12 80")
    assert dlt645.encode_value(0x02020100, 799.999) == h("99 99 79")
    raises(ValueError, dlt645.encode_value, 0x02020100, 800.0)  # would collide with the sign bit
    raises(ValueError, dlt645.encode_value, 0x00010000, -0.01)  # unsigned format
    raises(ValueError, dlt645.encode_value, 0x00010000, 1000000.0)


def test_malformed_value_bytes_are_corrupt():
    raises(dlt645.Corrupt, dlt645.value, 0x00010000, h("0A 00 00 00"))  # not BCD
    raises(dlt645.Corrupt, dlt645.value, 0x00010000, h("FF FF FF FF"))
    raises(dlt645.Corrupt, dlt645.value, 0x00010000, h("00 00 00"))  # short
    raises(dlt645.Corrupt, dlt645.value, 0x02010100, h("00 00 00"))  # long
    raises(dlt645.Corrupt, dlt645.value, 0x04000101, h("00 01 13 25"))  # month 13
    raises(dlt645.Corrupt, dlt645.value, 0x04000101, h("07 01 06 25"))  # weekday 7
    raises(dlt645.Corrupt, dlt645.value, 0x04000102, h("00 60 12"))  # minute 60
    raises(dlt645.Corrupt, dlt645.value, 0x04000401, h("0A 72 00 72 00 00"))
    e = raises(dlt645.DLT645Error, dlt645.value, 0x12345678, h("00"))
    assert not isinstance(e, dlt645.Corrupt)


def test_format_rows():
    assert dlt645.fmt(0x00010000) == (0x00010000, dlt645_values.NUMBER, 4, 2, False, "kWh")
    assert dlt645.fmt(0x02020100)[4] is True and dlt645.fmt(0x02020100)[5] == "A"
    assert dlt645.fmt(0x12345678) is None
    assert dlt645_values.is_1997(0x9010) and not dlt645_values.is_1997(0x00010000)
    assert not dlt645_values.is_1997(0)


def test_bcd_helpers():
    assert dlt645_values.bcd_to_int(h("21 43 65"), False) == 654321
    assert dlt645_values.int_to_bcd(654321, 3) == h("21 43 65")
    assert dlt645_values.int_to_bcd(-5, 1, True) == h("85")
    raises(ValueError, dlt645_values.int_to_bcd, 100, 1)


def test_dates_and_times_validated_on_encode():
    assert dlt645.encode_value(0x04000101, "2024-02-29") == h("04 29 02 24")
    raises(ValueError, dlt645.encode_value, 0x04000101, "1999-12-31")
    raises(ValueError, dlt645.encode_value, 0x04000101, "2025-13-01")
    raises(ValueError, dlt645.encode_value, 0x04000102, "24:00:00")
    raises(ValueError, dlt645.encode_value, 0x04000401, "12345")
