"""The whole terminal at one time scale (a simulated day in 12 s): the meter's true time, the modem's network and
GNSS time and the firmware's clock (BDMETER_TIME_SCALE, unix port only). Over several simulated days WITHOUT a
restart, each day's freeze arrives through the daily collection (a scheduled round, not the catch-up at boot),
stamped with the simulated time of that day; the meter clock check runs once on each simulated day; a command
signed with the simulated time is accepted."""

import re
import time

import pytest

from firmware.clock import civil, epoch
from tools.rig import TerminalRig

pytestmark = pytest.mark.system

ADDR = "000072007201"
DAY_S = 12.0  # host seconds a simulated day takes
SCALE = int(86400 / DAY_S)  # 7200
OFFSET = 28800  # the meters' local time: UTC+8 (the firmware's default meter_utc_offset_s)
MARGIN = 1800  # frozen_margin_s: the day's freeze is read from 00:30 meter time
DAYS = 4  # simulated days whose freezes must come through the daily collection


def _local_day(t):
    return int(t + OFFSET) // 86400


def _date(day):
    return "%04d-%02d-%02d" % civil(day * 86400)[:3]


def test_days_in_seconds_without_a_restart(tmp_path):
    rig = TerminalRig(tmp_path, address=ADDR, start=False, meter_kw=2.0, speedup=1.0, time_scale=SCALE,
                      cfg={"poll_s": 2, "meter_max_kw": 1e6, "frozen_pace_ms": 0, "meter_events_s": 60,
                           "frozen_margin_s": MARGIN, "frozen_window_s": 0,
                           # what a reply's few host milliseconds of delay become at 7200x
                           "meter_clock_threshold_s": 3600, "meter_clock_window_s": 3600,
                           "cmd_max_skew_s": 86400})
    try:
        local = rig.now() + OFFSET
        rig.advance((12 * 3600 - local % 86400) % 86400)  # the firmware starts at noon, meter time
        rig.start_firmware()
        started = time.monotonic()
        boot_day = _local_day(rig.now())
        rig.wait("first readings", lambda: len(rig.of("energy")) >= 2, 60)
        want = [_date(boot_day + k) for k in range(1, DAYS + 1)]  # midnights after the boot
        rig.wait("%d days' freezes" % DAYS, lambda: set(want) <= {f["date"] for f in rig.of("frozen")},
                 DAYS * DAY_S + 45)
        assert rig.starts == 1 and rig.alive()
        log = rig.fw.output()
        assert "SIMULATION: the clock runs %d times faster" % SCALE in log

        # each day's freeze through a scheduled round of that simulated day, stamped with its simulated time
        rounds = {d: int(n) for d, n in re.findall(r"frozen day\(s\) stored, up to (\S+) \(round (\d+) since boot\)",
                                                   log)}
        frozen = {f["date"]: f for f in rig.of("frozen")}
        for date in want:
            assert rounds.get(date, 0) >= 2, (date, rounds)
            f = frozen[date]
            y, mo, d = (int(x) for x in date.split("-"))
            midnight = epoch(y, mo, d) - OFFSET
            assert f["tsrc"] in ("gnss", "net")
            assert midnight + MARGIN - 600 <= f["ts"] <= midnight + 6 * 3600, (date, f["ts"] - midnight)
        stamps = [frozen[d]["ts"] for d in want]
        assert stamps[-1] - stamps[0] > (DAYS - 1.5) * 86400  # days of the terminal's clock in under a minute
        assert time.monotonic() - started < DAYS * DAY_S + 45
        assert [f["date"] for f in rig.bus.meter(ADDR).freezes() if f["date"] in want] == want

        # the meter clock check: once on each simulated day
        def checks():
            return [e for e in rig.of("event") if e["kind"] == "meter_clock" and e["data"].get("meter") == ADDR]

        check_days = set(range(boot_day + 1, boot_day + DAYS + 1))
        rig.wait("a clock check on each day", lambda: check_days <= {_local_day(e["ts"]) for e in checks()}, DAY_S)
        checks = checks()
        days = [_local_day(e["ts"]) for e in checks]
        assert len(days) == len(set(days)), days
        assert all(abs(e["data"]["dev_s"]) < 3600 for e in checks), checks
        assert not [e for e in rig.of("event") if e["kind"] in ("meter_clock_fault", "clock_refused")]

        # commands are signed with the simulated time: the terminal's clock accepts them
        rid, _ = rig.command("status")
        resp = rig.answer(rid)
        assert "error" not in resp, resp
        late = [round((frozen[d]["ts"] + OFFSET) % 86400 / 3600.0, 2) for d in want]
        print("%d simulated days in %.0f s: freezes %s in rounds %s, stamped at %s h meter time; clock checks on "
              "days %s, deviations %s s" % (DAYS, DAYS * DAY_S, want, [rounds[d] for d in want], late, sorted(days),
                                           [e["data"]["dev_s"] for e in checks]))
    finally:
        rig.close()
