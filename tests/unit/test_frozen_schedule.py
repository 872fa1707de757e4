"""firmware/frozen scheduling: the per-terminal spread, the wait to the next round after the meters' midnight,
hourly retries while a meter is behind or the clock untrusted; plausibility of energy registers."""

from portable import FixedClock, scratch

from firmware import payloads
from firmware.clock import epoch
from firmware.frozen import FrozenDays, spread_s
from firmware.plausibility import Plausibility


def cfg(**kw):
    c = {"state_dir": scratch("frozen-sched"), "frozen_days_max": 62, "frozen_margin_s": 300,
         "frozen_window_s": 3600, "frozen_pace_ms": 0, "meter_utc_offset_s": 28800}
    c.update(kw)
    return c


def test_spread_is_stable_and_within_the_window():
    a = spread_s("861234567890123", 3600)
    assert a == spread_s("861234567890123", 3600) and 0 <= a < 3600
    spread = {spread_s("8612345678901%02d" % k, 3600) for k in range(50)}
    assert len(spread) > 40  # a fleet spreads out
    assert spread_s("x", 0) == 0 and 0 <= spread_s("", 100) < 100


def test_next_round_after_the_meters_midnight_plus_margin_and_spread():
    # 2026-11-27 10:00 UTC = 18:00 at UTC+8: the next meter midnight is 6 h away
    clock = FixedClock(epoch(2026, 11, 27, 10, 0, 0))
    fd = FrozenDays(None, cfg(), clock, None, None)
    wait = fd.next_wait_s("861234567890123")
    assert wait == 6 * 3600 + 300 + spread_s("861234567890123", 3600)
    assert fd.today() == (epoch(2026, 11, 27) // 86400)
    # 00:02 meter time, before today's slot: today's slot, not tomorrow's
    clock.t = epoch(2026, 11, 27, 16, 2, 0)
    assert fd.next_wait_s("861234567890123") == max(60, 300 - 120 + spread_s("861234567890123", 3600))


def test_hourly_while_behind_or_untrusted():
    clock = FixedClock(epoch(2026, 11, 27, 10, 0, 0), "none")
    fd = FrozenDays(None, cfg(), clock, None, None)
    assert fd.next_wait_s("t") == 3600 and fd.today() is None
    clock.source = "gnss"
    fd.behind = True
    assert fd.next_wait_s("t") == 3600


def _kwh(fwd, rev=0):
    return {"fwd": payloads.Centi(fwd), "rev": payloads.Centi(rev)}


def test_plausibility_decrease_and_too_fast():
    p = Plausibility(10)  # 10 kW
    assert p.check("A", 0, _kwh(100000)) is None
    assert p.check("A", 900, _kwh(100250)) is None  # 2.5 kWh in 15 min = 10 kW
    bad = p.check("A", 1800, _kwh(100100))
    assert bad["why"] == "decreased" and bad["reg"] == "fwd" and bad["prev"] == payloads.Centi(100250)
    assert p.check("A", 2700, _kwh(100300)) is None  # compared with the last value seen
    bad = p.check("A", 2760, _kwh(100400))  # 1 kWh in a minute = 60 kW
    assert bad["why"] == "too_fast" and bad["dt_s"] == 60
    assert p.check("A", 2820, _kwh(100400, 5)) is None
    assert p.check("A", 2880, _kwh(100400, 1))["reg"] == "rev"
    p.forget("A")  # a meter clear: registers restart
    assert p.check("A", 2940, _kwh(0)) is None
    assert p.anomalies == 3
