"""firmware/settlement scheduling: the month of the latest settlement at a settlement day DDhh, the wait to the
meters' next settlement plus margin and spread, hourly while behind, a round only when due; the settlement day
decoder."""

from portable import FixedClock, raises, scratch

import dlt645_frozen as fz
from firmware.clock import epoch
from firmware.meter_walk import spread_s
from firmware.settlement import Settlements, latest, month_add


def cfg():
    return {"state_dir": scratch("settle-sched"), "frozen_margin_s": 300, "frozen_window_s": 3600,
            "frozen_pace_ms": 0, "meter_utc_offset_s": 28800}


def test_month_arithmetic_and_the_latest_settlement():
    assert month_add(2026, 1, -1) == (2025, 12) and month_add(2026, 12, 1) == (2027, 1)
    assert month_add(2026, 11, -12) == (2025, 11)
    assert latest(epoch(2026, 11, 1, 0, 0, 0), (1, 0)) == (2026, 11)  # at the instant: settled
    assert latest(epoch(2026, 10, 31, 23, 59, 59), (1, 0)) == (2026, 10)
    assert latest(epoch(2026, 11, 15, 5, 59, 0), (15, 6)) == (2026, 10)
    assert latest(epoch(2026, 1, 10), (15, 6)) == (2025, 12)


def test_next_round_after_the_next_settlement_plus_margin_and_spread():
    tid = "861234567890123"
    # 2026-11-27 10:00 UTC = 18:00 at UTC+8; the meter settles on the 1st at 00:00
    clock = FixedClock(epoch(2026, 11, 27, 10, 0, 0))
    st = Settlements(None, cfg(), clock, None, None)
    assert st.next_wait_s(tid) == 3600  # no meter's settlement day known yet
    st.days["000072007201"] = (1, 0)
    assert st.next_wait_s(tid) == 3 * 86400 + 6 * 3600 + 300 + spread_s(tid, 3600)
    st.days["000072007202"] = (28, 12)  # the 28th at 12:00 comes first
    assert st.next_wait_s(tid) == 18 * 3600 + 300 + spread_s(tid, 3600)
    st.behind = True
    assert st.next_wait_s(tid) == 3600
    st.behind = False
    clock.source = "none"
    assert st.next_wait_s(tid) == 3600


def test_a_round_only_when_due():
    st = Settlements(None, cfg(), FixedClock(epoch(2026, 11, 27, 10, 0, 0)), None, None)
    assert st.due(100) and st.wait_s(100) == 3600
    st._next = 5000
    assert not st.due(100) and st.due(5000) and st.wait_s(4990) == 60 and st.wait_s(1000) == 4000


def test_settlement_day_decoder():
    assert fz.decode_settle_day(bytes((0x00, 0x01))) == (1, 0)
    assert fz.decode_settle_day(bytes((0x06, 0x15))) == (15, 6)
    for bad in (bytes((0x00, 0x29)), bytes((0x24, 0x01)), bytes((0x99, 0x99)), bytes(1), bytes((0x0A, 0x01))):
        raises(ValueError, fz.decode_settle_day, bad)
    assert fz.settle_di(fz.SETTLE_FWD_BLOCK, 12) == 0x0001FF0C and fz.settle_di(fz.SETTLE_REV, 1) == 0x00020001
    raises(ValueError, fz.settle_di, fz.SETTLE_FWD, 0)
