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

import asyncio

import dlt645
import dlt645_frozen as fz

from firmware import meter_state, payloads
from firmware.clock import epoch

_FILE = "/frozen.json"
_RETRY_S = 3600  # a meter that did not answer, or has not frozen yesterday yet: try again after this
_WALKS = 3  # restarts of one catch-up when freezes keep shifting under it


def _day(tm):
    return epoch(tm[0], tm[1], tm[2]) // 86400


def _day_of(date):
    y, m, d = date.split("-")
    return epoch(int(y), int(m), int(d)) // 86400


def spread_s(tid, window_s):
    """This terminal's offset within the collection window, the same every day (a hash of its id)."""
    if window_s <= 0:
        return 0
    h = 5381
    for ch in tid or "":
        h = (h * 33 + ord(ch)) & 0xFFFFFF
    return h % window_s


class _Shifted(Exception):
    """The meter froze while its freezes were being read: indexes moved by one."""


class FrozenDays:
    """Reads every meter's daily freezes not yet sent and stores them as `frozen` records."""

    def __init__(self, master, cfg, clock, store, log, pause=None):
        self.master = master
        self.cfg = cfg
        self.clock = clock
        self.store = store  # store(kind, body) -> seq, or None when the outbox could not write it
        self.log = log
        self.pause = pause  # awaitable factory between bus reads, else asyncio.sleep_ms(frozen_pace_ms)
        self.path = cfg["state_dir"] + _FILE
        self.progress = meter_state.load(self.path, log)  # address -> last date stored, "YYYY-MM-DD"
        self.lacking = set()  # meters that answer "no such data" for daily freezes
        self.stored = 0
        self.undecodable = 0  # replies that did not fit a known layout (refused, counted)
        self.bus_ms = 0  # wire time of the frames this module exchanged (a figure for the bench)
        self.behind = False  # the last round left a meter without yesterday's freeze
        self.rewalks = 0  # catch-ups walked again because the meter froze meanwhile

    async def _pace(self):
        if self.pause:
            await self.pause()
        else:
            await asyncio.sleep_ms(self.cfg["frozen_pace_ms"])

    async def _read(self, addr, di):
        raw = await self.master.read_raw(addr, di)
        self.bus_ms += self.master.wire_ms(32 + len(raw))  # request with preamble + reply
        await self._pace()
        return raw

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

    async def collect(self, addr, today=None):
        """Store every freeze of `addr` newer than the last stored, oldest first; the number stored.

        `today`: the meter's local day number (days since 1970) if known, to say whether yesterday's
        freeze is in. Errors of the meter link propagate (the caller retries later); a meter without
        daily freezes is remembered and skipped.
        """
        if addr in self.lacking:
            return 0
        stored = 0
        for _ in range(_WALKS):
            try:
                stored += await self._walk(addr, today)
                return stored
            except _Shifted:
                self.rewalks += 1
                self.log.info("meter %s froze during catch-up; walking again", addr)
            except dlt645.Corrupt:
                self.undecodable += 1
                raise
            except dlt645.MeterError as e:
                if not e.no_data:
                    raise
                self.lacking.add(addr)
                self.log.warning("meter %s keeps no daily freezes (%s)", addr, e)
                return stored
        return stored

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
                    raise _Shifted()
                date = fz.date_text(tm)
                ts, tsrc = self.clock.stamp()
                if self.store("frozen", payloads.frozen(ts, tsrc, addr, date, fz.stamp_text(tm), fwd, rev)) is None:
                    self.behind = True  # the outbox could not write it: progress stays, retried later
                    self.log.error("meter %s frozen %s not stored; retrying later", addr, date)
                    return stored
                self.progress[addr] = last = date  # after the record is on flash: a cut re-sends, never skips
                meter_state.save(self.path, self.progress, self.log)
                stored += 1
                self.stored += 1
            n -= 1
        return stored

    async def _oldest(self, addr, depth):
        """The index of the oldest freeze held (up to `depth`): times read newest first up to the first empty."""
        for n in range(2, depth + 1):
            if await self._time(addr, n) is None:
                return n - 1
        return depth

    def next_wait_s(self, tid):
        """Seconds until the next round: the meter's next midnight + margin + this terminal's spread."""
        cfg = self.cfg
        if self.behind or self.clock.source not in ("gnss", "net", "rtc"):
            return _RETRY_S
        local = self.clock.now() + cfg["meter_utc_offset_s"]
        due = (local // 86400) * 86400 + cfg["frozen_margin_s"] + spread_s(tid, cfg["frozen_window_s"])
        if due <= local:
            due += 86400  # today's slot has passed: tomorrow's
        return max(60, due - local)

    def today(self):
        """The meters' local day number by a trusted clock, else None."""
        if self.clock.source not in ("gnss", "net"):
            return None
        return (self.clock.now() + self.cfg["meter_utc_offset_s"] - self.cfg["frozen_margin_s"]) // 86400

    async def round(self, meters, checkin=None):
        """One collection over `meters`; True if every meter answered."""
        self.behind = False
        ok = True
        for addr in meters:
            if checkin:
                checkin()
            try:
                n = await self.collect(addr, self.today())
            except dlt645.DLT645Error as e:
                self.log.warning("meter %s frozen values: %s", addr, e)
                self.behind = True
                ok = False
                continue
            if n:
                self.log.info("meter %s: %d frozen day(s) stored, up to %s", addr, n, self.progress.get(addr))
        return ok
