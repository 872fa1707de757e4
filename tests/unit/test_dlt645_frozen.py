"""dlt645_frozen: DIs (binary N-th previous), freeze times, energies, event records and status words from
hand-checked bytes; empty records, and refusals of layouts not known."""

import dlt645_frozen as fz
from portable import raises


def h(text):
    return bytes(int(x, 16) for x in text.split())


def test_daily_dis_count_n_in_binary():
    assert fz.daily_time_di(1) == 0x05060001
    assert fz.daily_time_di(10) == 0x0506000A  # binary, not BCD 0x10
    assert fz.daily_fwd_di(62) == 0x0506013E
    assert fz.daily_rev_di(2) == 0x05060202
    raises(ValueError, fz.daily_time_di, 0)
    raises(ValueError, fz.daily_time_di, 63)
    assert fz.settle_fwd_block_di(0) == 0x0001FF00 and fz.settle_fwd_block_di(12) == 0x0001FF0C
    raises(ValueError, fz.settle_fwd_block_di, 13)


def test_event_dis():
    assert fz.event_count_di("power_down") == 0x03110000
    assert fz.event_record_di("power_down", 1) == 0x03110001
    assert fz.event_record_di("meter_cover", 10) == 0x03300D0A
    assert fz.event_count_di("clock_set") == 0x03300400
    raises(ValueError, fz.event_record_di, "power_down", 11)
    raises(ValueError, fz.event_count_di, "earthquake")
    assert set(fz.KINDS) == {"power_down", "programming", "meter_clear", "event_clear", "clock_set",
                             "meter_cover", "terminal_cover"}


def test_freeze_time():
    # mm hh DD MM YY, lowest first: 2026-11-27 00:00
    assert fz.decode_freeze_time(h("00 00 27 11 26")) == (2026, 11, 27, 0, 0)
    assert fz.stamp_text((2026, 11, 27, 0, 0)) == "2026-11-27T00:00"
    assert fz.date_text((2026, 11, 27, 0, 0)) == "2026-11-27"
    assert fz.decode_freeze_time(h("00 00 00 00 00")) is None  # that freeze never happened
    assert fz.decode_freeze_time(h("FF FF FF FF FF")) is None
    raises(ValueError, fz.decode_freeze_time, h("00 00 30 02 26"))  # 30 February
    raises(ValueError, fz.decode_freeze_time, h("00 24 01 01 26"))
    raises(ValueError, fz.decode_freeze_time, h("00 00 01 01"))
    raises(ValueError, fz.decode_freeze_time, h("0A 00 01 01 26"))
    assert fz.decode_freeze_time(h("30 23 29 02 28")) == (2028, 2, 29, 23, 30)  # leap day


def test_energies_total_and_tariffs():
    raw = h("78 56 34 12  00 00 10 00  01 00 00 00  99 99 99 99  00 00 00 00")
    assert fz.decode_energies(raw) == [12345678, 100000, 1, 99999999, 0]
    assert fz.decode_energies(raw, 1) == [12345678]
    raises(ValueError, fz.decode_energies, raw[:6])
    raises(ValueError, fz.decode_energies, b"")
    raises(ValueError, fz.decode_energies, raw[:4], 2)
    raises(ValueError, fz.decode_energies, h("AA AA AA AA"))  # not BCD: refused, never misread


def test_count():
    assert fz.decode_count(h("21 43 00")) == 4321
    raises(ValueError, fz.decode_count, h("21 43 00 00"))


def test_power_down_record():
    # start 2026-11-20 13:05:09, end 2026-11-20 14:00:00 (ss mm hh DD MM YY each)
    rec = fz.decode_event("power_down", h("09 05 13 20 11 26  00 00 14 20 11 26"))
    assert rec == {"start": (2026, 11, 20, 13, 5, 9), "end": (2026, 11, 20, 14, 0, 0)}
    still_down = fz.decode_event("power_down", h("09 05 13 20 11 26  00 00 00 00 00 00"))
    assert still_down["end"] is None
    assert fz.decode_event("power_down", bytes(12)) is None
    raises(ValueError, fz.decode_event, "power_down", bytes(11))


def test_meter_cover_record_energies():
    before = h("00 01 00 00  50 00 00 00") + bytes(16)  # fwd 1.00, rev 0.50, Q1..Q4
    after = h("10 01 00 00  50 00 00 00") + bytes(16)
    raw = h("00 30 08 21 11 26  00 31 08 21 11 26") + before + after
    rec = fz.decode_event("meter_cover", raw)
    assert rec["start"] == (2026, 11, 21, 8, 30, 0) and rec["end"] == (2026, 11, 21, 8, 31, 0)
    assert rec["before"] == [100, 50] and rec["after"] == [110, 50]


def test_terminal_cover_short_variant_refused():
    raises(ValueError, fz.decode_event, "terminal_cover", h("00 30 08 21 11 26  00 31 08 21 11 26 00 00"))
    assert fz.decode_event("terminal_cover", bytes(14)) is None  # empty is empty in any layout


def test_clock_set_record():
    raw = h("78 56 34 12  00 00 10 21 11 26  30 00 10 21 11 26")
    rec = fz.decode_event("clock_set", raw)
    assert rec == {"operator": "12345678", "before": (2026, 11, 21, 10, 0, 0), "after": (2026, 11, 21, 10, 0, 30)}


def test_programming_meter_clear_event_clear():
    at = h("00 00 09 01 10 26")
    op = h("01 00 00 00")
    dis = h("01 01 00 04  02 01 00 04") + b"\xff" * 32
    rec = fz.decode_event("programming", at + op + dis)
    assert rec == {"at": (2026, 10, 1, 9, 0, 0), "operator": "00000001", "dis": [0x04000101, 0x04000102]}
    rec = fz.decode_event("meter_clear", at + op + h("00 00 01 00  00 50 00 00") + bytes(88))
    assert rec["before"] == [10000, 5000]
    rec = fz.decode_event("event_clear", at + op + h("00 00 11 03"))
    assert rec["di"] == 0x03110000
    raises(ValueError, fz.decode_event, "meter_clear", at + op)


def test_status_words():
    # word 1: bit 2 clock battery low; word 3: bit 4 relay open; word 7: bits 5 and 9
    words = [0x0004, 0, 0x0010, 0, 0, 0, 0x0220]
    raw = b"".join(bytes((w & 0xFF, w >> 8)) for w in words)
    st = fz.decode_status(raw)
    assert st["words"] == words
    assert st["clock_battery_low"] and st["relay_open"] and st["power_down"] and st["cover_open"]
    assert not st["clock_fault"] and not st["terminal_cover_open"]
    one = fz.decode_status(h("00 80"), first=1)
    assert one["clock_fault"] and "relay_open" not in one
    assert len(fz.decode_status(raw + h("00 00"))["words"]) == 8  # the 16-byte variant
    raises(ValueError, fz.decode_status, h("00"))


def test_load_profile_record():
    # 2026-11-27 13:15, voltages and currents only (phase B current negative), energy group; the rest empty
    body = h("15 13 27 11 26") + h("01 23 02 23 03 23  50 12 00  00 05 80  00 00 00  01 50") + h("AA AA AA")
    body += h("56 34 12 00  50 01 00 00  00 00 00 00  10 00 00 80") + h("AA AA AA")
    rec = h("A0 A0") + bytes([len(body)]) + body
    rec += bytes([sum(rec) & 0xFF]) + h("E5")
    got = fz.decode_profile(rec)
    assert got == {"at": (2026, 11, 27, 13, 15), "v": [2301, 2302, 2303], "i": [1250, -500, 0], "f": 5001,
                   "fwd": 123456, "rev": 150, "q_comb": [0, -10]}
    bad = bytearray(rec)
    bad[-2] ^= 1
    raises(ValueError, fz.decode_profile, bytes(bad))  # checksum
    raises(ValueError, fz.decode_profile, h("E0 E0") + rec[2:])  # marked incorrect by the meter
    raises(ValueError, fz.decode_profile, rec[:-1])
