"""Meter events: the meters' own event counters read periodically; new records sent as `meter_event` records.

Counters (power-down, programming, meter clear, event clear, clock set, meter cover, terminal cover;
DI 03110000, 033000xx) are read hourly and after a meter comes back online. The first sight of a
meter sends one `meter_event` of kind "baseline" with every count and replays nothing. When a count
grows, the new records (at most the 10 a meter keeps; "missed" says how many more there were) are
read and sent oldest first, each keyed by (meter, kind, n) with n its ordinal in the meter's count.
A record still open (a cover open, the supply still off: no end yet) is read again at the next check
and sent once more, with its end, under the same key. Counts are kept in `<state_dir>/meter_events.json`
after each kind, so a power cut re-sends at most a few records (same keys), never loses one. A meter
clear calls `on_clear(meter)`: its registers restarting from zero are not an anomaly.
"""

import asyncio

import dlt645
import dlt645_frozen as fz

from firmware import meter_state, payloads

_FILE = "/meter_events.json"
_WRAP = 1000000  # counts are 6 BCD digits


def _texts(rec):
    """A decoded record -> JSON-ready fields: stamps as text, energies as exact kWh, DIs as hex."""
    out = {}
    for k, v in rec.items():
        if k in ("start", "end", "at") or (k in ("before", "after") and (v is None or isinstance(v, tuple))):
            out[k] = fz.stamp_text(v)
        elif k in ("before", "after"):
            out["kwh_" + k] = [payloads.Centi(x) for x in v]
        elif k == "dis":
            out[k] = ["%08X" % d for d in v]
        elif k == "di":
            out[k] = None if v is None else "%08X" % v
        else:
            out[k] = v
    return out


class MeterEvents:
    """Event counters and records of every meter, with a baseline on first sight."""

    def __init__(self, master, clock, store, log, state_dir, pause_ms=100, on_clear=None):
        self.master = master
        self.clock = clock
        self.store = store
        self.log = log
        self.pause_ms = pause_ms
        self.on_clear = on_clear
        self.path = state_dir + _FILE
        self.state = meter_state.load(self.path, log)  # address -> {kind: count, or None if not kept; "open": {}}
        self.sent = 0
        self.undecodable = 0
        self.bus_ms = 0

    async def _read(self, addr, di, expect_refusal=False):
        raw = await self.master.read_raw(addr, di, expect_refusal)
        self.bus_ms += self.master.wire_ms(32 + len(raw))
        await asyncio.sleep_ms(self.pause_ms)
        return raw

    async def _count(self, addr, kind):
        prev = self.state.get(addr)
        lacks = isinstance(prev, dict) and kind in prev and prev[kind] is None  # known: not an error
        try:
            raw = await self._read(addr, fz.event_count_di(kind), lacks)
        except dlt645.MeterError as e:
            if e.no_data:
                return None  # this meter does not log this kind
            raise
        try:
            return fz.decode_count(raw)
        except ValueError as e:
            self.undecodable += 1
            raise dlt645.Corrupt("%s count: %s" % (kind, e))

    async def check(self, addr):
        """Read `addr`'s counters; send the baseline or the new records. The number of records sent."""
        counts = {}
        for kind in fz.KINDS:
            counts[kind] = await self._count(addr, kind)
        prev = self.state.get(addr)
        ts, tsrc = self.clock.stamp()
        if not isinstance(prev, dict):
            self.store("meter_event", payloads.meter_event(ts, tsrc, addr, "baseline", 0, {"counts": dict(counts)}))
            counts["open"] = {}
            self.state[addr] = counts
            meter_state.save(self.path, self.state, self.log)
            self.sent += 1
            return 1
        sent = await self._reopen(addr, prev)
        for kind in fz.KINDS:
            c, p = counts[kind], prev.get(kind)
            if c is None or p is None or c == p:
                if c != p:
                    prev[kind] = c  # a kind newly kept (or no longer): its count is the baseline
                    meter_state.save(self.path, self.state, self.log)
                continue
            new = (c - p) % _WRAP if c > p or p - c > _WRAP // 2 else c  # below the last: counts were cleared
            sent += await self._records(addr, kind, c, new, prev)
            prev[kind] = c
            meter_state.save(self.path, self.state, self.log)
            if kind == "meter_clear" and self.on_clear:
                self.on_clear(addr)
        return sent

    async def _records(self, addr, kind, count, new, prev):
        keep = min(new, fz.EVENT_DEPTH)
        sent = 0
        for i in range(keep, 0, -1):  # oldest first
            n = count - i + 1
            data = await self._record(addr, kind, i)
            if data is None:
                continue
            if i == keep and new > keep:
                data["missed"] = new - keep
            if kind in ("power_down", "meter_cover", "terminal_cover") and data.get("end") is None:
                prev.setdefault("open", {})[kind] = n  # read again until it has an end
            self._send(addr, kind, n, data)
            sent += 1
        return sent

    async def _record(self, addr, kind, i):
        raw = await self._read(addr, fz.event_record_di(kind, i))
        try:
            rec = fz.decode_event(kind, raw)
        except ValueError as e:
            self.undecodable += 1
            self.log.warning("meter %s %s record %d not decoded: %s", addr, kind, i, e)
            return {"undecoded": True}
        return None if rec is None else _texts(rec)

    async def _reopen(self, addr, prev):
        opened = prev.get("open")
        if not isinstance(opened, dict):
            prev["open"] = opened = {}
        sent = 0
        for kind in list(opened):
            n = opened[kind]
            i = prev.get(kind, 0) - n + 1  # its place among the last records now
            data = None
            if 1 <= i <= fz.EVENT_DEPTH:
                data = await self._record(addr, kind, i)
                if data is not None and data.get("end") is None:
                    continue  # still open
            del opened[kind]
            if data is not None:
                self._send(addr, kind, n, data)
                sent += 1
            meter_state.save(self.path, self.state, self.log)
        return sent

    def _send(self, addr, kind, n, data):
        ts, tsrc = self.clock.stamp()
        self.log.info("meter %s event %s #%d %s", addr, kind, n, data.get("start") or data.get("at") or "")
        self.store("meter_event", payloads.meter_event(ts, tsrc, addr, kind, n, data))
        self.sent += 1
