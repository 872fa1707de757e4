"""Settlement-day data (结算日): each meter's monthly settlements read after each one and caught up, oldest first.

A meter settles at its settlement day 1 (DDhh in DI 04000B01; the 1st at 00:00 for a meter that lacks the
DI) and keeps its last 12 settlements, "previous 1" the latest: the forward active energy, total then
tariffs (block 0001FF01..0C; a meter that refuses the block is read its total, 00010001..0C) and the
reverse active total (00020001..0C). Which month "previous N" is comes from the meter's own clock
(04000101/02) and settlement day, read at the start of each walk and again after its (at most 12) reads,
before anything is stored: a settlement in between shifts every index by one and the walk starts again. No
walk begins within `_SETTLING_S` after a settlement instant.

After each settlement instant + `frozen_margin_s` + this terminal's spread in `frozen_window_s`, at boot
and when a meter is back online, every settlement newer than the last one sent is stored as a `settle`
record keyed by (meter, date), oldest first: re-sending one is harmless at the server. Progress (the last
date sent per meter) is kept in `<state_dir>/settle.json` after each record (firmware/meter_walk.py), so
a power cut means resume, never restart and never skip. An item a meter answers with "no such data" is
a known refusal in meter_caps (asked again without counting as an error).
"""

import dlt645
import dlt645_frozen as fz

from firmware import payloads
from firmware.clock import civil, epoch, real_s
from firmware.meter_walk import RETRY_S, MeterWalk, Shifted, spread_s

_DI_DATE = 0x04000101
_DI_TIME = 0x04000102
_DEFAULT_DAY = (1, 0)  # the 1st at 00:00: DL/T 645 meters' factory settlement day
_SETTLING_S = 60  # this soon after a settlement instant the meter may still be settling: read later
# the families a refusal is remembered under in meter_caps (their "previous 1" DI)
_BLOCK = fz.SETTLE_FWD_BLOCK + 1
_TOTAL = fz.SETTLE_FWD + 1
_REV = fz.SETTLE_REV + 1


def month_add(y, mo, k):
    """(year, month) k months after (y, mo); k may be negative."""
    m = y * 12 + mo - 1 + k
    return m // 12, m % 12 + 1


def instant(ym, day):
    """Meter-local seconds of the settlement of month ym = (y, mo) at day = (DD, hh)."""
    return epoch(ym[0], ym[1], day[0], day[1])


def latest(local, day):
    """(y, mo) of the latest settlement instant at or before meter-local seconds `local`."""
    y, mo = civil(local)[:2]
    return (y, mo) if instant((y, mo), day) <= local else month_add(y, mo, -1)


class Settlements(MeterWalk):
    """Reads every meter's settlements not yet sent and stores them as `settle` records."""

    FILE = "/settle.json"
    WHAT = "settlement(s)"

    def __init__(self, master, cfg, clock, store, log, caps=None, pause=None):
        super().__init__(master, cfg, clock, store, log, pause)
        self.caps = caps  # MeterCaps: refusals remembered with the meter's others
        self.days = {}  # address -> (day, hour) of its settlement day 1, as last read
        self._next = None  # uptime (s) of the next round due; None: due now

    # -- bus -------------------------------------------------------------------------------
    async def _item(self, addr, di, family, required=False):
        """The value bytes of `di`, or None when the meter has no such data (remembered under `family`)."""
        known = self._refuses(addr, family)
        try:
            raw = await self._read(addr, di, known)
        except dlt645.MeterError as e:
            if not e.no_data:
                raise
            if self.caps is not None:
                self.caps.note(addr, family, True)
            if required:
                raise
            return None
        if known:
            self.caps.note(addr, family, False)  # answered after all (another meter there now)
        return raw

    async def settle_day(self, addr):
        """(day, hour) of the meter's settlement day 1; the 1st at 00:00 if it has no such data."""
        raw = await self._item(addr, fz.SETTLE_DAY_1, fz.SETTLE_DAY_1)
        try:
            day = _DEFAULT_DAY if raw is None else fz.decode_settle_day(raw)
        except ValueError as e:
            raise dlt645.Corrupt("settlement day: %s" % e)
        self.days[addr] = day
        return day

    async def meter_now(self, addr):
        """The meter's own clock, meter-local seconds (the date read again if the time crossed midnight)."""
        for _ in range(2):
            date = dlt645.value(_DI_DATE, await self._read(addr, _DI_DATE))
            tm = dlt645.value(_DI_TIME, await self._read(addr, _DI_TIME))
            if dlt645.value(_DI_DATE, await self._read(addr, _DI_DATE)) == date:
                y, mo, d = [int(x) for x in date.split("-")]
                h, mi, s = [int(x) for x in tm.split(":")]
                return epoch(y, mo, d, h, mi, s)
        raise dlt645.Corrupt("meter %s date kept changing" % addr)

    def _refuses(self, addr, family):
        return self.caps is not None and self.caps.refuses(addr, family)

    def _decode(self, raw, di, unsettled=False):
        """Energies in hundredths; None for a place never written (all FF; all 00 too where `unsettled`)."""
        if fz.settled_empty(raw) and (unsettled or raw[0] == 0xFF):
            return None
        try:
            return [payloads.Centi(x) for x in fz.decode_energies(raw)]
        except ValueError as e:
            raise dlt645.Corrupt("DI %08X: %s" % (di, e))

    async def _forward(self, addr, n):
        """Forward active of the n-th previous settlement (block, else the total), None if not settled."""
        if not self._refuses(addr, _BLOCK):
            di = fz.settle_di(fz.SETTLE_FWD_BLOCK, n)
            raw = await self._item(addr, di, _BLOCK)
            if raw is not None:
                return self._decode(raw, di, True)
        # no block: the total alone (a meter without even that keeps no settlements: MeterError propagates)
        di = fz.settle_di(fz.SETTLE_FWD, n)
        return self._decode(await self._item(addr, di, _TOTAL, True), di, True)

    async def _reverse(self, addr, n):
        di = fz.settle_di(fz.SETTLE_REV, n)
        raw = await self._item(addr, di, _REV)
        return None if raw is None else self._decode(raw, di)

    # -- the walk ----------------------------------------------------------------------------
    def _settling(self, local, day):
        return local - instant(latest(local, day), day) < _SETTLING_S

    async def _walk(self, addr, _arg):
        day = await self.settle_day(addr)
        now = await self.meter_now(addr)
        if self._settling(now, day):
            self.behind = True  # the meter may be settling right now: next round
            return 0
        ym = latest(now, day)
        last = self.progress.get(addr)
        if isinstance(last, str):
            n = min(fz.SETTLE_DEPTH, ym[0] * 12 + ym[1] - int(last[:4]) * 12 - int(last[5:7]))
        else:
            n = fz.SETTLE_DEPTH  # first sight: as far back as the meter keeps (empty ones are skipped)
        if n < 1:
            return 0
        read = []  # (n, fwd, rev), oldest first: at most 12, kept until the meter's clock says they are its own
        while n >= 1:
            fwd = await self._forward(addr, n)
            if fwd is not None:
                read.append((n, fwd, await self._reverse(addr, n)))
            n -= 1
        later = await self.meter_now(addr)  # a settlement meanwhile shifted every index by one: read again
        if latest(later, day) != ym or self._settling(later, day):
            raise Shifted()
        stored = 0
        for n, fwd, rev in read:
            y, mo = month_add(ym[0], ym[1], 1 - n)
            date = "%04d-%02d-%02d" % (y, mo, day[0])
            ts, tsrc = self.clock.stamp()
            if not self._keep("settle", addr, date,
                              payloads.frozen(ts, tsrc, addr, date, "%sT%02d:00" % (date, day[1]), fwd, rev)):
                return stored
            stored += 1
        return stored

    def _no_data(self, addr, e):
        self.log.warning("meter %s keeps no settlements (%s)", addr, e)

    # -- schedule --------------------------------------------------------------------------------
    def next_wait_s(self, tid):
        """Host seconds until the next round: the meters' next settlement + margin + this terminal's spread (the
        clock's time divided by its scale in a simulation)."""
        cfg = self.cfg
        if self.behind or self.clock.source not in ("gnss", "net", "rtc") or not self.days:
            return real_s(self.clock, RETRY_S)
        local = self.clock.now() + cfg["meter_utc_offset_s"]
        late = cfg["frozen_margin_s"] + spread_s(tid, cfg["frozen_window_s"])
        best = None
        for day in self.days.values():
            ym = latest(local, day)
            due = instant(ym, day) + late
            if due <= local:
                due = instant(month_add(ym[0], ym[1], 1), day) + late
            best = due if best is None else min(best, due)
        return real_s(self.clock, max(60, best - local))

    def due(self, uptime_s):
        """True when a round is due (the first, or the scheduled one has come)."""
        return self._next is None or uptime_s >= self._next

    def wait_s(self, uptime_s):
        """Host seconds until the next round is due (at least a minute of the clock's time)."""
        if self._next is None:
            return real_s(self.clock, RETRY_S)
        return max(real_s(self.clock, 60), self._next - uptime_s)

    async def round_if_due(self, meters, tid, uptime_s, checkin=None, force=False):
        """A round when due (or `force`: a meter is back online); then the next one is scheduled."""
        if not (force or self.due(uptime_s)):
            return None
        ok = await self.round(meters, checkin)
        self._next = uptime_s + self.next_wait_s(tid)
        return ok
