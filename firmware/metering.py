"""Meter polling: energy registers and the configured instantaneous values, into the outbox."""

import dlt645
from dlt645_values import bcd_to_int

from firmware import payloads


def _register(raw, signed):
    """An energy register's 4 BCD bytes (XXXXXX.XX kWh) as an exact Centi; Corrupt if not BCD."""
    if len(raw) != 4:
        raise dlt645.Corrupt("energy register of %d bytes" % len(raw))
    try:
        return payloads.Centi(bcd_to_int(raw, signed))
    except ValueError as e:
        raise dlt645.Corrupt(str(e))

_OFFLINE_AFTER = 3  # consecutive failed polls before a meter is reported offline


class Metering:
    def __init__(self, t):
        self.t = t
        self.last = {}  # address -> {"ts", "tsrc", "kwh", "inst"}
        self._fails = {}
        self._offline = set()
        self.reads = 0
        self.failed_reads = 0

    async def discover(self):
        """The meter addresses to poll: the configured list, or the single meter found with read-address."""
        t = self.t
        if t.cfg["meters"]:
            return list(t.cfg["meters"])
        while True:
            t.checkin("meter")
            try:
                addr = await t.master.read_address()
                t.log.info("meter discovered: %s", addr)
                return [addr]
            except dlt645.DLT645Error as e:
                t.log.warning("meter discovery failed (%s); retrying", e)
            await t.sleep_checked("meter", 10)

    async def read(self, addr):
        """One reading of meter `addr` (dict as in the energy message) or None when the meter did not answer."""
        t = self.t
        ts, tsrc = t.clock.stamp()
        kwh = {}
        try:
            dis = payloads.ENERGY_DIS
            try:
                # one frame for the total and its tariffs: a consistent snapshot (separate reads straddle growth)
                raw = await t.master.read_raw(addr, payloads.FWD_BLOCK_DI)
                for i, key in enumerate(("fwd", "t1", "t2", "t3", "t4")):
                    if 4 * i + 4 <= len(raw):
                        kwh[key] = _register(raw[4 * i:4 * i + 4], False)
            except dlt645.MeterError:
                pass  # no block reads on this meter: register by register
            if "fwd" in kwh:
                dis = dis[5:]
            for di, key in dis:
                try:
                    kwh[key] = _register(await t.master.read_raw(addr, di), di == payloads.COMBINED_DI)
                except dlt645.MeterError:
                    if key == "fwd":
                        raise
                    # the meter does not keep this register: leave it out
            inst = {}
            for item in t.cfg["inst"]:
                values = []
                for di in payloads.INST_DIS[item]:
                    try:
                        values.append(await t.master.read(addr, di))
                    except dlt645.MeterError:
                        break  # single-phase meter: no phase B/C
                if values:
                    inst[item] = values if item in ("v", "i") else values[0]
        except dlt645.DLT645Error as e:
            self.failed_reads += 1
            t.log.warning("meter %s read failed: %s", addr, e)
            self._failed(addr)
            return None
        self.reads += 1
        self._ok(addr)
        reading = {"ts": ts, "tsrc": tsrc, "kwh": kwh}
        if inst:
            reading["inst"] = inst
        self.last[addr] = reading
        return reading

    def _failed(self, addr):
        n = self._fails.get(addr, 0) + 1
        self._fails[addr] = n
        if n == _OFFLINE_AFTER and addr not in self._offline:
            self._offline.add(addr)
            self.t.emit_event("meter_offline", {"meter": addr})

    def _ok(self, addr):
        self._fails[addr] = 0
        if addr in self._offline:
            self._offline.discard(addr)
            self.t.emit_event("meter_online", {"meter": addr})

    async def poll_and_store(self, addr):
        """Read `addr` and put the reading in the outbox before anything else happens to it."""
        reading = await self.read(addr)
        if reading is not None:
            self.t.store("energy", payloads.energy(reading["ts"], reading["tsrc"], addr, reading["kwh"],
                                                   reading.get("inst")))
        return reading

    async def run(self):
        t = self.t
        t.meters = await self.discover()
        while True:
            started = t.clock.uptime_s()
            for addr in t.meters:
                t.checkin("meter")
                await self.poll_and_store(addr)
            if t.cfg["time_sync_meters"]:
                await t.maybe_sync_meter_time()
            spent = t.clock.uptime_s() - started
            await t.sleep_checked("meter", max(1, t.cfg["poll_s"] - spent))

    async def sync_time(self):
        """Broadcast the trusted time to the meters (DL/T 645 08) in their local time. False without a trusted clock."""
        t = self.t
        if t.clock.source not in ("gnss", "net"):
            return False
        from firmware.clock import civil

        await t.master.broadcast_time(civil(t.clock.now() + t.cfg["meter_utc_offset_s"]))
        t.log.info("meter clocks synchronised from %s time", t.clock.source)
        return True
