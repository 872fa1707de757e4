"""Daily frozen values: each meter's own 00:00 freezes read once a day and caught up after outages, oldest first.

A meter keeps its last 62 daily freezes (DI 0506xxNN, NN = 1 the latest). After the meter's freeze
time plus `frozen_margin_s`, at an offset within `frozen_window_s` derived from the terminal id (so a
fleet spreads out), every freeze newer than the last one sent is read and stored as a `frozen` record
keyed by (meter, date): re-sending one is harmless at the server. Progress (the last date stored per
meter) is written atomically after each record, in `<state_dir>/frozen.json`, so a power cut means
resume, never restart and never skip. A new freeze taken while catching up shifts every index by one:
the latest freeze time is read again after each day's values, and a change restarts the walk (what is
stored stays stored). Reads are paced (`frozen_pace_ms` between them) so live polls keep their timing.
"""

import dlt645
import dlt645_frozen as fz

from firmware import payloads
from firmware.clock import epoch, real_s
from firmware.meter_walk import RETRY_S, MeterWalk, Shifted, spread_s

__all__ = ("FrozenDays", "spread_s")


def _day(tm):
    return epoch(tm[0], tm[1], tm[2]) // 86400


def _day_of(date):
    y, m, d = date.split("-")
    return epoch(int(y), int(m), int(d)) // 86400


class FrozenDays(MeterWalk):
    """Reads every meter's daily freezes not yet sent and stores them as `frozen` records."""

    FILE = "/frozen.json"
    WHAT = "frozen day(s)"

    async def _time(self, addr, n):
        try:
            return fz.decode_freeze_time(await self._read(addr, fz.daily_time_di(n)))
        except ValueError as e:
            raise dlt645.Corrupt("freeze time %d: %s" % (n, e))

    async def _energies(self, addr, di, required):
        try:
            raw = await self._read(addr, di)
        except dlt645.MeterError as e:
            if required or not e.no_data:
                raise
            return None  # this meter keeps no reverse freezes
        try:
            return [payloads.Centi(x) for x in fz.decode_energies(raw)]
        except ValueError as e:
            raise dlt645.Corrupt("DI %08X: %s" % (di, e))

    async def _walk(self, addr, today):
        latest = await self._time(addr, 1)
        if latest is None:
            return 0  # nothing frozen yet
        last = self.progress.get(addr)
        if today is not None and _day(latest) < today:
            self.behind = True
        if isinstance(last, str) and _day_of(last) >= _day(latest):
            return 0
        depth = min(self.cfg["frozen_days_max"], fz.DAILY_DEPTH)
        if isinstance(last, str):
            n = min(depth, _day(latest) - _day_of(last))
        else:
            n = await self._oldest(addr, depth)  # first sight: as far back as the meter has freezes
        stored = 0
        while n >= 1:
            tm = await self._time(addr, n) if n > 1 else latest
            if tm is not None and (not isinstance(last, str) or _day(tm) > _day_of(last)):
                fwd = await self._energies(addr, fz.daily_fwd_di(n), True)
                rev = await self._energies(addr, fz.daily_rev_di(n), False)
                if await self._time(addr, 1) != latest:
                    raise Shifted()
                date = fz.date_text(tm)
                ts, tsrc = self.clock.stamp()
                if not self._keep("frozen", addr, date,
                                  payloads.frozen(ts, tsrc, addr, date, fz.stamp_text(tm), fwd, rev)):
                    return stored
                last = date
                stored += 1
            n -= 1
        return stored

    async def _oldest(self, addr, depth):
        """The index of the oldest freeze held (up to `depth`): times read newest first up to the first empty."""
        for n in range(2, depth + 1):
            if await self._time(addr, n) is None:
                return n - 1
        return depth

    def next_wait_s(self, tid):
        """Host seconds until the next round: the meter's next midnight + margin + this terminal's spread (the
        clock's time divided by its scale in a simulation)."""
        cfg = self.cfg
        if self.behind or self.clock.source not in ("gnss", "net", "rtc"):
            return real_s(self.clock, RETRY_S)
        local = self.clock.now() + cfg["meter_utc_offset_s"]
        due = (local // 86400) * 86400 + cfg["frozen_margin_s"] + spread_s(tid, cfg["frozen_window_s"])
        if due <= local:
            due += 86400  # today's slot has passed: tomorrow's
        return real_s(self.clock, max(60, due - local))

    def today(self):
        """The meters' local day number by a trusted clock, else None."""
        if self.clock.source not in ("gnss", "net"):
            return None
        return (self.clock.now() + self.cfg["meter_utc_offset_s"] - self.cfg["frozen_margin_s"]) // 86400

    def _arg(self):
        return self.today()
