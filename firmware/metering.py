"""Meter polling: energy registers and the configured instantaneous values, into the outbox."""

import dlt645
from dlt645_values import bcd_to_int

from firmware import payloads
from firmware.meter_caps import MeterCaps
from firmware.plausibility import Plausibility


def _register(raw, signed):
    """An energy register's 4 BCD bytes (XXXXXX.XX kWh) as an exact Fixed; Corrupt if not BCD."""
    if len(raw) != 4:
        raise dlt645.Corrupt("energy register of %d bytes" % len(raw))
    try:
        return payloads.Centi(bcd_to_int(raw, signed))
    except ValueError as e:
        raise dlt645.Corrupt(str(e))

_OFFLINE_AFTER = 3  # consecutive failed polls before a meter is reported offline
_TARIFF_KEYS = ("fwd", "t1", "t2", "t3", "t4")


class Metering:
    def __init__(self, t):
        self.t = t
        self.last = {}  # address -> {"ts", "tsrc", "kwh", "inst"}
        self._fails = {}
        self._offline = set()
        self.reads = 0
        self.failed_reads = 0
        self.caps = MeterCaps(t.cfg["state_dir"], t.log)
        self.plausibility = Plausibility(t.cfg.get("meter_max_kw", 60))
        self.on_online = []  # callables(address), called when a meter comes back online

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

    async def _ask(self, addr, di):
        """The value bytes of `di`, or None when the meter lacks it (learned, or known and skipped)."""
        caps = self.caps
        if caps.skip(addr, di):
            return None
        try:
            raw = await self.t.master.read_raw(addr, di, caps.refuses(addr, di))
        except dlt645.MeterError as e:
            if not e.no_data:
                raise
            caps.learn(addr, di, True)
            return None
        caps.learn(addr, di, False)
        return raw

    async def read(self, addr):
        """One reading of meter `addr` (dict as in the energy message) or None when the meter did not answer."""
        t = self.t
        ts, tsrc = t.clock.stamp()
        probe = self.caps.begin(addr, t.clock.now())
        kwh = {}
        inst = {}
        try:
            await self._energy(addr, kwh)
            for item in t.cfg["inst"]:
                values = []
                for di in payloads.INST_DIS[item]:
                    try:
                        raw = await self._ask(addr, di)
                    except dlt645.MeterError:
                        raw = None  # refused for another reason this time: counted by the master
                    if raw is None:
                        break  # phases are contiguous: a single-phase meter has no B, hence no C
                    values.append(payloads.fixed(dlt645.fixed(di, raw)))
                if values:
                    inst[item] = values if item in ("v", "i") else values[0]
        except dlt645.DLT645Error as e:
            self.caps.end(addr, t.clock.now(), False)
            self.failed_reads += 1
            t.log.warning("meter %s read failed: %s", addr, e)
            self._failed(addr)
            return None
        self.caps.end(addr, t.clock.now(), True)
        if probe:
            t.log.info("meter %s probed: phases %s, refuses %s", addr, self.caps.phases(addr),
                       ",".join("%08X" % d for d in self.caps.refused(addr)) or "nothing")
        self.reads += 1
        self._ok(addr)
        reading = {"ts": ts, "tsrc": tsrc, "kwh": kwh}
        if inst:
            reading["inst"] = inst
        self.last[addr] = reading
        if t.cfg["log_level"] == "debug":
            t.log.debug("meter %s read: kwh %s inst %s", addr, payloads.dumps(kwh), payloads.dumps(inst))
        return reading

    async def _energy(self, addr, kwh):
        """The energy registers of `addr` into `kwh`; the forward total is required, the others optional."""
        dis = payloads.ENERGY_DIS
        try:
            # one frame for the total and its tariffs: a consistent snapshot (separate reads straddle growth)
            raw = await self._ask(addr, payloads.FWD_BLOCK_DI)
        except dlt645.MeterError:
            raw = None  # refused for another reason this time: register by register
        if raw is not None:
            for i, key in enumerate(_TARIFF_KEYS):
                if 4 * i + 4 <= len(raw):
                    kwh[key] = _register(raw[4 * i:4 * i + 4], False)
        if "fwd" in kwh:
            dis = dis[5:]
        for di, key in dis:
            if key == "fwd":
                kwh[key] = _register(await self.t.master.read_raw(addr, di), False)  # required: errors fail the read
                continue
            try:
                raw = await self._ask(addr, di)
            except dlt645.MeterError:
                raw = None
            if raw is not None:  # else the meter does not keep this register: leave it out
                kwh[key] = _register(raw, di == payloads.COMBINED_DI)

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
            self.caps.reprobe(addr)  # it was away: it may be another meter now
            self.t.emit_event("meter_online", {"meter": addr})
            for fn in self.on_online:
                fn(addr)

    async def poll_and_store(self, addr):
        """Read `addr` and put the reading in the outbox before anything else happens to it."""
        reading = await self.read(addr)
        if reading is not None:
            bad = self.plausibility.check(addr, self.t.clock.now(), reading["kwh"])
            if bad:
                self.t.emit_event("meter_anomaly", bad)  # not published as a reading
                return None
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
