"""Simulated DL/T 645 meters on one RS-485 bus, served over TCP to the firmware's TcpUart.

One TCP client at a time is the bus master (a newer client replaces an older
one). Requests "arrive" only after their wire time at the bus baud (8E1: 11
bits per byte) and replies are paced at wire speed, so bus efficiency can be
measured. The frame and value codec here is written independently of
lib/dlt645.py on purpose: the two check each other in the tests.

    python -m tools.sim.meter --port 7001 --meter 000072007201 [--meter ...] [--baud 2400]
        [--latency-ms 20:80] [--speedup 60] [--time-scale 1] [--seed 1] [--single-phase] [--no-block]
        [--control-port 7101]

prints `READY port=<P>` when listening (`--help` lists every option with its default).
The control port takes JSON lines:
`{"fault": "silence", "on": true, "address": null}`, `{"get": "served"}`,
`{"get": "stats"}`, `{"get": "registers", "address": "000072007201"}`, `{"get": "meters"}`,
`{"clear": "served"}`, and the meter's life: `{"mains": false, "address": A}` (supply cut: silent, a
power-down logged; true restores it), `{"cover": true|false, "address": A}`, `{"advance_s": 86400}` (true
time jumps ahead, the meters freeze at their midnights), `{"time_scale": 1440}`, `{"set_clock": [y, mo, d,
h, mi, s], "address": A}`, `{"drift_ppm": 50, "address": A}`,
`{"set_kwh": 12.5, "address": A}` (registers as a swapped meter's), `{"get": "freezes" | "settlements" | "events"
| "clock", "address": A}`; each gets one JSON line back (a request without an address applies to every meter).
The meters themselves are in meter_model.py (their memory in meter_history.py), the frame and value
codec in dlt645_wire.py.
"""

import argparse
import asyncio
import random
import sys
import time

from tools.sim.dlt645_wire import (  # noqa: F401 - re-exported: the simulator's codec as before the split
    BROADCAST, DI_1997, ERR_NO_DATA, ERR_OTHER, ERR_UNAUTHORISED, FORMATS, address_bytes, bcd, di_text,
    encode_value, make_frame, matches, parse_frame,
)
from tools.sim.meter_history import local_seconds
from tools.sim.meter_model import Meter, MeterSpec  # noqa: F401 - re-exported
from tools.sim.peer import SimPeer

FAULTS = ("silence", "bad_cs", "noise", "abnormal", "split", "followup", "drop_client", "echo")
BITS_PER_BYTE = 11  # 8E1: start + 8 data + parity + stop
FOLLOWUP_PART = 2  # value bytes per frame while the `followup` fault is on


# -- the bus ------------------------------------------------------------------------
class MeterBus(SimPeer):
    """Several meters on one simulated RS-485 bus, reached through one TCP port on 127.0.0.1."""

    thread_name = "meter bus"

    def __init__(self, specs, baud=2400, seed=1, latency_ms=(20, 80), speedup=1.0, utc_offset_s=8 * 3600,
                 abnormal_err=ERR_OTHER, host="127.0.0.1", time_scale=1.0):
        self.rng = random.Random(seed)
        specs = [MeterSpec(address=s) if isinstance(s, str) else s for s in specs]
        self.meters = [Meter(s, random.Random(self.rng.random()), speedup, utc_offset_s, time_scale) for s in specs]
        self.baud = baud
        self.latency_ms = latency_ms
        self.abnormal_err = abnormal_err
        self.host = host
        self.faults = {}  # bus-wide: fault name -> replies left to spoil (None: until switched off)
        self.served = []
        self.stats = dict.fromkeys(("requests", "replies", "broadcasts", "ignored", "abnormal", "silenced",
                                    "collisions", "bad_rx", "bytes_rx", "bytes_tx", "clients", "drops",
                                    "syncs_taken", "syncs_refused"), 0)
        self.port = None
        self.control_port = None
        self._loop = None
        self._thread = None
        self._servers = []
        self._writer = None
        self._bus_free = 0.0  # loop time at which the line is next idle

    # -- public, thread-safe ---------------------------------------------------
    def meter(self, address):
        for m in self.meters:
            if m.address == address:
                return m
        raise KeyError(address)

    def set_fault(self, name, on=True, address=None, times=None):
        """Switch a fault for one meter (address) or bus-wide (address None), for `times` requests or until off.

        `drop_client` always fires once; `echo` (the adapter hears its own requests) is bus-wide only.
        """
        if name not in FAULTS:
            raise ValueError("unknown fault %r (have %s)" % (name, ", ".join(FAULTS)))
        target = self.faults if address is None else self.meter(address).faults
        if on:
            target[name] = 1 if name == "drop_client" else times
        else:
            target.pop(name, None)

    def byte_time(self):
        return BITS_PER_BYTE / self.baud

    def _take_faults(self, meter):
        """The faults that apply to this request to `meter`, counting down those set for a number of times."""
        active = set()
        for table in (self.faults, meter.faults):
            for name, left in list(table.items()):
                active.add(name)
                if left is not None:
                    if left <= 1:
                        table.pop(name, None)
                    else:
                        table[name] = left - 1
        return active

    async def _client(self, reader, writer):
        old, self._writer = self._writer, writer
        if old is not None:
            old.close()  # a newer master replaces the older one
        self.stats["clients"] += 1
        chunks = asyncio.Queue()

        async def feed():
            try:
                while True:
                    data = await reader.read(4096)
                    await chunks.put((asyncio.get_running_loop().time(), data))
                    if not data:
                        return
            except (ConnectionError, OSError):
                await chunks.put((0.0, b""))

        feeder = asyncio.ensure_future(feed())
        buf = bytearray()
        try:
            while self._writer is writer:
                try:
                    # A receiver resets after a long gap inside a frame (0.5 s), like a meter's.
                    t, data = await asyncio.wait_for(chunks.get(), 0.5 if buf else None)
                except asyncio.TimeoutError:
                    buf.clear()
                    continue
                if not data:
                    break
                self.stats["bytes_rx"] += len(data)
                loop = asyncio.get_running_loop()
                self._bus_free = max(t, self._bus_free) + len(data) * self.byte_time()
                buf += data
                while True:
                    frame, used, bad = parse_frame(buf)
                    self.stats["bad_rx"] += bad
                    del buf[:used]
                    if frame is None:
                        if used:
                            continue
                        break
                    delay = self._bus_free - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)  # the request is still on the wire
                    await self._handle(frame, writer)
                    if self._writer is not writer:
                        break
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # shutting down; end quietly (streams would report a cancelled client task)
        finally:
            feeder.cancel()
            writer.close()
            if self._writer is writer:
                self._writer = None

    async def _handle(self, frame, writer):
        address, control, data = frame
        if control & 0x80:
            return  # a reply or an echo: not for meters
        self.stats["requests"] += 1
        if "echo" in self.faults:
            # A half-duplex adapter that hears its own transmission hands the request back first.
            writer.write(make_frame(address, control, data))
            await writer.drain()
        if address == BROADCAST:
            self.stats["broadcasts"] += 1
            if control == 0x08 and len(data) == 6:
                try:
                    ss, mm, hh, dd, mo, yy = (int("%02X" % b) for b in data)
                    tm = (2000 + yy, mo, dd, hh, mm, ss)
                    local_seconds(tm)
                    if not (1 <= mo <= 12 and 1 <= dd <= 31 and hh < 24 and mm < 60 and ss < 60):
                        raise ValueError(tm)
                except ValueError:
                    return  # not a valid time: ignored
                for m in self.meters:
                    if m.broadcast_sync(tm):
                        self.stats["syncs_taken"] += 1
                    else:
                        self.stats["syncs_refused"] += 1
            return  # never answer a broadcast
        found = [m for m in self.meters if matches(address, m.address)]
        if not found:
            self.stats["ignored"] += 1
            return
        if len(found) > 1:
            self.stats["collisions"] += 1  # several meters would talk at once: nothing readable
            return
        meter = found[0]
        if not meter.powered:
            self.stats["silenced"] += 1
            return  # no supply, no answer
        faults = self._take_faults(meter)
        if "drop_client" in faults:
            self.stats["drops"] += 1
            writer.close()
            self._writer = None
            return
        if "silence" in faults:
            self.stats["silenced"] += 1
            return
        reply, data, served = self._respond(meter, control, data, faults)
        frame = make_frame(meter.address, reply, data, "bad_cs" in faults)
        lo, hi = meter.spec.latency_ms or self.latency_ms
        await asyncio.sleep(self.rng.uniform(lo, hi) / 1000.0)

        def delivered():
            # Booked just before the frame's last byte goes out, so a client that has the frame sees the record.
            self.stats["replies"] += 1
            if served is not None:
                self.served.append(served)

        await self._send(writer, frame, faults, delivered)

    def _respond(self, meter, control, data, faults):
        """(reply control, reply data, served record or None) for one request to `meter`."""
        if control == 0x13:
            return 0x93, address_bytes(meter.address), None
        if "abnormal" in faults:
            self.stats["abnormal"] += 1
            return control | 0xC0, bytes([self.abnormal_err]), None
        limit = FOLLOWUP_PART if "followup" in faults else None
        if control in (0x11, 0x01) and len(data) == (4 if control == 0x11 else 2):
            n = len(data)
            di = int.from_bytes(data, "little")
            got = meter.read(di) if (n == 2) == (di in DI_1997) else None
            if got is None:
                self.stats["abnormal"] += 1
                return control | 0xC0, bytes([ERR_NO_DATA]), None
            value, raw = got
            room = limit or (meter.spec.max_frame_data - n - 1)
            parts = [raw[k:k + room] for k in range(0, len(raw), room)] or [b""]
            meter.followup = {"control": control + 1, "di": data, "parts": parts, "next": 1}
            served = None if "bad_cs" in faults else {"t": time.time(), "address": meter.address, "di": di_text(di),
                                                      "value": value}
            more = 0x20 if len(parts) > 1 else 0
            return control | 0x80 | more, data + parts[0], served
        if control in (0x12, 0x02):
            # 2007 names the frame it wants (SEQ, so a retry gets the same part again); 1997 just asks for the next
            fu = meter.followup
            n = 4 if control == 0x12 else 2
            if fu is None or fu["control"] != control or fu["di"] != data[:n]:
                return control | 0xC0, bytes([ERR_OTHER]), None
            parts = fu["parts"]
            seq = (data[n] if len(data) > n else None) if control == 0x12 else fu["next"]
            if seq is None or not 1 <= seq < len(parts):
                return control | 0xC0, bytes([ERR_OTHER]), None
            if "bad_cs" not in faults:
                fu["next"] = seq + 1
            more = 0x20 if seq + 1 < len(parts) else 0
            tail = bytes([seq]) if control == 0x12 else b""
            return control | 0x80 | more, data[:n] + parts[seq] + tail, None
        if control == 0x14 and len(data) >= 12:
            di = int.from_bytes(data[:4], "little")
            level, pw = data[4], bytes(data[5:8])[::-1].hex()
            if level != 2 or pw != meter.spec.password or di not in (0x04000101, 0x04000102):
                return 0xD4, bytes([ERR_UNAUTHORISED]), None
            y, mo, d, h, mi, s = meter.clock_tuple()
            raw = data[12:]
            try:
                f = [int("%02X" % b) for b in raw]
                if di == 0x04000101:
                    y, mo, d = 2000 + f[3], f[2], f[1]
                else:
                    h, mi, s = f[2], f[1], f[0]
                meter.write_clock((y, mo, d, h, mi, s))
            except (IndexError, ValueError, OverflowError):
                return 0xD4, bytes([ERR_OTHER]), None
            return 0x94, b"", None
        return (control & 0x1F) | 0xC0, bytes([ERR_OTHER]), None

    async def _send(self, writer, payload, faults, delivered):
        """One reply frame with its FE preamble, paced at wire speed (and noise / splits if asked)."""
        rng = self.rng
        noisy = "noise" in faults
        pre = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6))) if noisy else b""
        post = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6))) if noisy else b""
        data = pre + b"\xfe" * rng.randint(0, 4) + payload
        last = len(data)  # index just past the frame's final byte
        data += post
        loop = asyncio.get_running_loop()
        bt = self.byte_time()
        t = max(loop.time(), self._bus_free)
        split = "split" in faults
        step = max(4, int(0.010 / bt))  # about 10 ms of bytes per write
        k = 0
        while k < len(data):
            n = rng.randint(1, 3) if split else step
            piece = data[k:k + n]
            t += len(piece) * bt + (rng.uniform(0.002, 0.010) if split else 0.0)
            delay = t - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if k < last <= k + n:
                delivered()
            writer.write(piece)
            await writer.drain()
            self.stats["bytes_tx"] += len(piece)
            k += n
        self._bus_free = t

    # -- control port -------------------------------------------------------------------
    def command(self, req):
        """One control request (a dict) -> its answer (a dict)."""
        if "fault" in req:
            self.set_fault(req["fault"], bool(req.get("on", True)), req.get("address"), req.get("times"))
            return {"ok": True}
        if req.get("clear") == "served":
            self.served.clear()
            return {"ok": True}
        what = req.get("get")
        if what == "served":
            return {"served": list(self.served)}
        if what == "stats":
            return {"stats": dict(self.stats)}
        if what == "meters":
            return {"meters": [m.address for m in self.meters]}
        if what == "registers":
            regs = self.meter(req["address"]).registers()
            return {"registers": {di_text(di): v for di, v in regs.items()}}
        if what == "clock":
            return {"clock": list(self.meter(req["address"]).clock_tuple())}
        if what == "freezes":
            return {"freezes": self.meter(req["address"]).freezes()}
        if what == "settlements":
            return {"settlements": self.meter(req["address"]).settlements()}
        if what == "events":
            return {"events": self.meter(req["address"]).events()}
        return self._life(req)

    def _life(self, req):
        """Control requests that change the meters' world: supply, cover, time."""
        targets = [self.meter(req["address"])] if req.get("address") else self.meters
        if "mains" in req:
            for m in targets:
                m.set_mains(bool(req["mains"]))
        elif "cover" in req:
            for m in targets:
                m.set_cover(bool(req["cover"]))
        elif "advance_s" in req:
            for m in targets:
                m.advance(float(req["advance_s"]))
        elif "time_scale" in req:
            for m in targets:
                m.set_time_scale(float(req["time_scale"]))
        elif "set_clock" in req:
            for m in targets:
                m.set_clock(tuple(int(x) for x in req["set_clock"]))
        elif "set_kwh" in req:
            for m in targets:
                m.set_forward(float(req["set_kwh"]))
        elif "drift_ppm" in req:
            for m in targets:
                m.set_clock(m.clock_tuple())  # drift counts from now
                m.drift_ppm = float(req["drift_ppm"])
        else:
            raise ValueError("unknown request %r" % (req,))
        return {"ok": True}


def _range(text):
    lo, _, hi = text.partition(":")
    return float(lo), float(hi or lo)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.sim.meter", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0,
                    help="TCP port of the bus on 127.0.0.1; 0 takes a free one (default: %(default)s)")
    ap.add_argument("--meter", action="append", default=[], metavar="ADDRESS",
                    help="12-digit address of a meter on the bus, repeat for several "
                         "(default: one meter, 000072007201)")
    ap.add_argument("--baud", type=int, default=2400,
                    help="bus speed at 8E1, paces requests and replies (default: %(default)s)")
    ap.add_argument("--latency-ms", type=_range, default="20:80", metavar="LO:HI",
                    help="a meter answers after a random delay in this range, ms (default: 20:80)")
    ap.add_argument("--speedup", type=float, default=1.0,
                    help="energy grows this many times faster than real time (default: %(default)s)")
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="the meters' true time (clock, freezes, energy) runs this many times faster than the "
                         "host's, so days pass in minutes (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the load profiles and noise (default: %(default)s)")
    ap.add_argument("--max-frame-data", type=int, default=200,
                    help="longest reply data (L); longer values go out as follow-up frames (default: %(default)s)")
    ap.add_argument("--single-phase", action="store_true",
                    help="single-phase meters: voltage, current and power of phases B and C are refused with "
                         "ERR 'no such data', as a real single-phase meter does (default: three-phase)")
    ap.add_argument("--no-block", action="store_true",
                    help="meters refuse the block DI 0001FF00 with ERR 'no such data' (default: block served)")
    ap.add_argument("--control-port", type=int, default=None,
                    help="TCP port for JSON control lines (faults, stats); 0 takes a free one "
                         "(default: no control port)")
    args = ap.parse_args(argv)
    specs = [MeterSpec(address=a, max_frame_data=args.max_frame_data, phases=1 if args.single_phase else 3,
                       block=not args.no_block) for a in (args.meter or ["000072007201"])]
    bus = MeterBus(specs, baud=args.baud, seed=args.seed, latency_ms=args.latency_ms, speedup=args.speedup,
                   time_scale=args.time_scale)
    return bus.serve(args.port, args.control_port)


if __name__ == "__main__":
    sys.exit(main())
