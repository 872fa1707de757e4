"""Meter clock discipline: each meter's clock compared daily with a trusted clock, synced by broadcast when it may be.

Only GNSS or network time is trusted (never `rtc` or `none`). Each meter's date and time (04000101,
04000102) are read and compared; the deviation goes out as a `meter_clock` event. A deviation above
`meter_clock_threshold_s` but within `meter_clock_window_s` (what meters accept from a broadcast) is
corrected by one broadcast time sync (08) a day, never within `meter_clock_guard_s` of 00:00 meter
time (the freeze and settlement instant: meters refuse it there, and a freeze must not move), then
read back to verify. Beyond the window a `meter_clock_fault` event says the meter needs programming,
and no sync is sent for it. The day of the last sync is kept in `<state_dir>/meter_clock.json`.
"""

import asyncio

import dlt645

from firmware import meter_state
from firmware.clock import civil, epoch, real_s

_FILE = "/meter_clock.json"
_DI_DATE = 0x04000101
_DI_TIME = 0x04000102
_SETTLE_MS = 1500  # after a broadcast, before reading back: meters take it in
_VERIFY_S = 2  # read-back deviation accepted as synced (one-second resolution on both sides)
_LOOK_S = 3600  # a new day is looked for at least this often (of the clock's time)


def _split(text, sep):
    return [int(x) for x in text.split(sep)]


class MeterClock:
    """Daily check of every meter's clock against GNSS / network time, and the broadcast sync."""

    def __init__(self, master, cfg, clock, emit_event, log):
        self.master = master
        self.cfg = cfg
        self.clock = clock
        self.emit_event = emit_event
        self.log = log
        self.path = cfg["state_dir"] + _FILE
        self.state = meter_state.load(self.path, log)  # {"synced": local day of the last sync, "checked": day}
        self.syncs = 0
        self.bus_ms = 0

    def _local(self):
        return self.clock.now() + self.cfg["meter_utc_offset_s"]

    def trusted(self):
        return self.clock.source in ("gnss", "net")

    def due(self):
        """True when today's check (by the trusted clock, meters' local day) has not been done."""
        return self.trusted() and self.state.get("checked") != self._local() // 86400

    def wait_s(self):
        """Host seconds until a new day is looked for again: an hour of the clock's time (scaled in a simulation,
        so the check runs on each simulated day)."""
        return real_s(self.clock, _LOOK_S)

    async def _read(self, addr, di):
        v = await self.master.read(addr, di)
        self.bus_ms += self.master.wire_ms(32 + 4)
        return v

    async def deviation(self, addr):
        """Meter clock minus trusted local time, in seconds (the date read again if the time crossed midnight)."""
        for _ in range(2):
            date = await self._read(addr, _DI_DATE)
            tm = await self._read(addr, _DI_TIME)
            true = self._local()  # the time reply has just arrived: both at the same instant, to a second
            if await self._read(addr, _DI_DATE) == date:
                y, mo, d = _split(date, "-")
                h, mi, s = _split(tm, ":")
                return epoch(y, mo, d, h, mi, s) - true
        raise dlt645.Corrupt("meter %s date kept changing" % addr)

    def _in_guard(self, local):
        guard = self.cfg["meter_clock_guard_s"]
        tod = local % 86400
        return tod < guard or tod > 86400 - guard

    async def check(self, meters):
        """Today's check of `meters`: deviations, faults, at most one sync. 'untrusted', 'guard', or 'done'."""
        if not self.trusted():
            return "untrusted"
        cfg = self.cfg
        devs = {}
        for addr in meters:
            try:
                devs[addr] = await self.deviation(addr)
            except dlt645.DLT645Error as e:
                self.log.warning("meter %s clock not read: %s", addr, e)
        local = self._local()
        if any(self._in_guard(local + d) for d in devs.values()) or self._in_guard(local):
            return "guard"  # around the meters' midnight: nothing now, the next check will do it
        day = local // 86400
        wrong = []
        for addr, d in devs.items():
            info = {"meter": addr, "dev_s": d}
            if abs(d) > cfg["meter_clock_window_s"]:
                self.emit_event("meter_clock_fault",
                                {"meter": addr, "dev_s": d, "window_s": cfg["meter_clock_window_s"]})
            elif abs(d) > cfg["meter_clock_threshold_s"]:
                wrong.append(addr)
                continue  # reported with the sync's outcome
            self.emit_event("meter_clock", info)
        if wrong:
            if self.state.get("synced") == day or not cfg["meter_clock_sync"]:
                for addr in wrong:
                    self.emit_event("meter_clock", {"meter": addr, "dev_s": devs[addr]})
            else:
                await self._sync(wrong, devs, day)
        self.state["checked"] = day
        meter_state.save(self.path, self.state, self.log)
        return "done"

    async def _sync(self, wrong, devs, day):
        # The broadcast carries the time of its last byte's arrival, about: sent whole seconds, rounded.
        await self.master.broadcast_time(civil(self._local()))
        self.syncs += 1
        self.bus_ms += self.master.wire_ms(22)
        self.state["synced"] = day
        meter_state.save(self.path, self.state, self.log)
        await asyncio.sleep_ms(_SETTLE_MS)
        for addr in wrong:
            info = {"meter": addr, "dev_s": devs[addr], "synced": True}
            try:
                after = await self.deviation(addr)
                info["after_s"] = after
                info["ok"] = abs(after) <= _VERIFY_S
            except dlt645.DLT645Error as e:
                self.log.warning("meter %s clock not read back: %s", addr, e)
                info["ok"] = False
            self.emit_event("meter_clock", info)
