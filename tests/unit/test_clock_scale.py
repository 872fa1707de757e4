"""The clock at a simulation's time scale: time and ages scaled, uptime real, the agreement window widened, waits
to calendar times divided; the scale only from the unix port's environment."""

import os

from portable import FixedClock, scratch

from firmware.clock import SCALE_ENV, Clock, env_scale, real_s
from firmware.frozen import FrozenDays
from firmware.meter_clock import MeterClock
from firmware.settlement import Settlements

T0 = 1795430400  # 2026-11-23 10:40 UTC
DAY = 86400


def _clock(scale):
    seen = []
    c = Clock(on_refused=lambda src, delta: seen.append((src, delta)), scale=scale)
    c._ref_utc, c.source = None, "none"  # whatever the host's RTC says: start unset
    return c, seen


def _later(c, s):
    c._up_ms += int(s * 1000)  # as if `s` real seconds went by


def test_time_runs_scaled_uptime_stays_real():
    c, _ = _clock(1440)
    up = c.uptime_s()
    assert c.set(T0, "gnss")
    _later(c, 60)
    assert c.now() == T0 + DAY  # a day a minute
    assert c.uptime_s() - up == 60  # task intervals stay real
    assert c.stamp() == (T0 + DAY, "gnss")


def test_scale_one_is_real_time():
    c, _ = _clock(1)
    assert c.scale == 1 and c.agree_s == 60
    assert c.set(T0, "gnss")
    _later(c, 60)
    assert c.now() == T0 + 60


def test_readings_carried_forward_and_aged_on_the_scaled_clock():
    c, _ = _clock(1440)
    assert c.set(T0, "net")
    _later(c, 400)  # 6.7 days of the clock's time
    assert c.reading("net") == T0 + 400 * 1440
    _later(c, 30)  # 7.2 days: older than the 7 days a reading confirms anything for
    assert c.reading("net") is None
    assert c.reading("gnss") is None


def test_network_time_corrects_after_six_scaled_hours_of_gnss_silence():
    c, _ = _clock(1440)
    assert c.set(T0, "gnss")
    _later(c, 10)  # 4 h of the clock's time: GNSS is fresh
    assert not c.set(c.now() + 5, "net")
    _later(c, 6)  # 6.4 h
    assert c.set(c.now() + 5, "net") and c.source == "net"


def test_agreement_window_widens_with_the_scale():
    # at 1440x a reading a second late is 24 minutes off: still agreement, not a jump to refuse
    c, seen = _clock(1440)
    assert c.agree_s == 2 * 1440
    assert c.set(T0, "net") and c.set(T0 + 1, "gnss")
    _later(c, 1)
    assert c.set(c.now() - 1500, "gnss") and c.agreed and not seen
    # a jump beyond the window that network time contradicts is refused as at scale 1
    _later(c, 1)
    assert not c.set(c.now() + 3 * 3600, "gnss")
    assert len(seen) == 1 and seen[0][0] == "gnss" and not c.agreed
    # the dispute lasts an hour of the clock's time: 2.5 s here
    _later(c, 3)
    assert c.agreed
    # at scale 1 the same 1500 s is a jump, refused since net time contradicts it
    c1, seen1 = _clock(1)
    assert c1.set(T0, "net") and c1.set(T0 + 1, "gnss")
    assert not c1.set(T0 - 1500, "gnss") and len(seen1) == 1


def test_real_s_divides_waits_to_calendar_times():
    c, _ = _clock(1440)
    assert real_s(c, DAY) == 60
    assert real_s(c, 3600) == 2.5
    assert real_s(c, 60) == 1  # never less than a second: nothing spins
    one, _ = _clock(1)
    assert real_s(one, 3600) == 3600 and isinstance(real_s(one, 3600), int)  # unchanged at scale 1
    assert real_s(object(), 77) == 77  # a clock without a scale runs real time


def _setenv(value):
    if hasattr(os, "environ"):  # CPython: os.getenv reads os.environ
        if value is None:
            os.environ.pop(SCALE_ENV, None)
        else:
            os.environ[SCALE_ENV] = value
    elif value is None:
        os.unsetenv(SCALE_ENV)
    else:
        os.putenv(SCALE_ENV, value)


def test_scale_from_the_environment_only_when_valid():
    try:
        _setenv(None)
        assert env_scale() == (1, None)
        _setenv("1440")
        assert env_scale() == (1440, None)
        for bad in ("fast", "0", "-5", "1.5", "1000000"):
            _setenv(bad)
            scale, why = env_scale()
            assert scale == 1 and SCALE_ENV in why and bad in why, (bad, why)
    finally:
        _setenv(None)


def _cfg(name):
    return {"state_dir": scratch(name), "frozen_days_max": 62, "frozen_margin_s": 300, "frozen_window_s": 0,
            "frozen_pace_ms": 0, "meter_utc_offset_s": 28800, "meter_clock_guard_s": 300}


def test_collections_wait_for_the_scaled_calendar():
    # 2026-11-27 10:00 UTC = 18:00 at UTC+8: the next meter midnight + 300 s margin is 6 h 5 min away
    from firmware.clock import epoch

    clock = FixedClock(epoch(2026, 11, 27, 10, 0, 0), scale=1440)
    fd = FrozenDays(None, _cfg("scale-frozen"), clock, None, None)
    assert fd.next_wait_s("t") == (6 * 3600 + 300) / 1440
    fd.behind = True
    assert fd.next_wait_s("t") == 2.5  # the hourly retry: 2.5 s at 1440x
    st = Settlements(None, _cfg("scale-settle"), clock, None, None)
    st.days["000072007201"] = (1, 0)
    assert st.next_wait_s("t") == (3 * DAY + 6 * 3600 + 300) / 1440
    assert st.wait_s(100) == 2.5  # no round yet: an hour
    st._next = 100.5
    assert st.wait_s(100) == 1  # a minute of the clock's time at least, but a second of the host's
    mc = MeterClock(None, _cfg("scale-mclock"), clock, None, None)
    assert mc.wait_s() == 2.5  # a new day is looked for hourly (of the clock's time)
    clock.scale = 1
    assert fd.next_wait_s("t") == 3600 and mc.wait_s() == 3600 and st.wait_s(100) == 60
