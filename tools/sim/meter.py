"""Simulated DL/T 645 meters on one RS-485 bus, served over TCP to the firmware's TcpUart.

One TCP client at a time is the bus master (a newer client replaces an older
one). Requests "arrive" only after their wire time at the bus baud (8E1: 11
bits per byte) and replies are paced at wire speed, so bus efficiency can be
measured. The frame and value codec here is written independently of
lib/dlt645.py on purpose: the two check each other in the tests.

    python -m tools.sim.meter --port 7001 --meter 000072007201 [--meter ...] [--baud 2400]
        [--latency-ms 20:80] [--speedup 60] [--seed 1] [--control-port 7101]

prints `READY port=<P>` when listening. The control port takes JSON lines:
`{"fault": "silence", "on": true, "address": null}`, `{"get": "served"}`,
`{"get": "stats"}`, `{"get": "registers", "address": "000072007201"}`, `{"get": "meters"}`,
`{"clear": "served"}`; each gets one JSON line back.
"""

import argparse
import asyncio
import calendar
import datetime
import math
import random
import sys
import threading
import time
from dataclasses import dataclass

from tools.sim.peer import SimPeer

FAULTS = ("silence", "bad_cs", "noise", "abnormal", "split", "followup", "drop_client", "echo")
BROADCAST = "999999999999"
BITS_PER_BYTE = 11  # 8E1: start + 8 data + parity + stop
ERR_OTHER = 0x01
ERR_NO_DATA = 0x02
ERR_UNAUTHORISED = 0x04
FOLLOWUP_PART = 2  # value bytes per frame while the `followup` fault is on
TARIFF_BY_HOUR = "444444442211333332211334"  # 1 sharp, 2 peak, 3 flat, 4 valley (local hour -> tariff)

# DI -> (kind, bytes, decimals, signed); kinds: n number, b block of numbers, d date, t time, s digits
FORMATS = {
    0x00000000: ("n", 4, 2, True), 0x00010000: ("n", 4, 2, False),
    0x00010100: ("n", 4, 2, False), 0x00010200: ("n", 4, 2, False),
    0x00010300: ("n", 4, 2, False), 0x00010400: ("n", 4, 2, False),
    0x0001FF00: ("b", 4, 2, False), 0x00020000: ("n", 4, 2, False),
    0x02010100: ("n", 2, 1, False), 0x02010200: ("n", 2, 1, False), 0x02010300: ("n", 2, 1, False),
    0x02020100: ("n", 3, 3, True), 0x02020200: ("n", 3, 3, True), 0x02020300: ("n", 3, 3, True),
    0x02030000: ("n", 3, 4, True), 0x02030100: ("n", 3, 4, True),
    0x02030200: ("n", 3, 4, True), 0x02030300: ("n", 3, 4, True),
    0x02060000: ("n", 2, 3, True), 0x02800002: ("n", 2, 2, False),
    0x04000101: ("d", 4, 0, False), 0x04000102: ("t", 3, 0, False),
    0x04000401: ("s", 6, 0, False), 0x04000402: ("s", 6, 0, False),
    # DL/T 645-1997
    0x9010: ("n", 4, 2, False), 0xB611: ("n", 2, 0, False), 0xB621: ("n", 2, 2, False),
    0xB630: ("n", 3, 4, False), 0xC010: ("d", 4, 0, False), 0xC011: ("t", 3, 0, False),
    0xC032: ("s", 6, 0, False),
}
DI_1997 = (0x9010, 0xB611, 0xB621, 0xB630, 0xC010, 0xC011, 0xC032)


# -- codec (independent of lib/dlt645) ----------------------------------------
def address_bytes(address):
    return bytes.fromhex(address)[::-1]


def make_frame(address, control, data, bad_cs=False):
    """68 A 68 C L DATA+33 CS 16 for an address string; `bad_cs` spoils the checksum."""
    body = bytes([0x68]) + address_bytes(address) + bytes([0x68, control, len(data)])
    body += bytes((b + 0x33) & 0xFF for b in data)
    cs = (sum(body) + (1 if bad_cs else 0)) & 0xFF
    return body + bytes([cs, 0x16])


def bcd(n, nbytes, signed=False):
    neg = n < 0
    raw = bytearray(bytes.fromhex("%0*d" % (2 * nbytes, abs(n)))[::-1])
    if len(raw) != nbytes or (signed and raw[-1] & 0x80):
        raise ValueError("%d does not fit %d bytes" % (n, nbytes))
    if neg:
        raw[-1] |= 0x80
    return bytes(raw)


def encode_value(di, v):
    """Value bytes (without DI, without 0x33) of a DI in FORMATS."""
    kind, nbytes, dec, signed = FORMATS[di]
    if kind == "n":
        return bcd(round(v * 10 ** dec), nbytes, signed)
    if kind == "b":
        return b"".join(bcd(round(x * 10 ** dec), nbytes, signed) for x in v)
    if kind == "d":
        y, m, d = (int(x) for x in v.split("-"))
        weekday = datetime.date(y, m, d).isoweekday() % 7  # 0 = Sunday
        return bcd(weekday, 1) + bcd(d, 1) + bcd(m, 1) + bcd(y % 100, 1)
    if kind == "t":
        h, mi, s = (int(x) for x in v.split(":"))
        return bcd(s, 1) + bcd(mi, 1) + bcd(h, 1)
    return bytes.fromhex(v)[::-1]


def di_text(di):
    return "%04X" % di if di in DI_1997 else "%08X" % di


def parse_frame(buf):
    """(frame, used, bad): frame = (address, control, data) or None; drop `used` bytes; bad: a frame failed CS."""
    i = buf.find(0x68)
    if i < 0:
        return None, len(buf), False
    if len(buf) < i + 10:
        return None, i, False
    if buf[i + 7] != 0x68 or buf[i + 9] > 200:
        return None, i + 1, False
    n = buf[i + 9]
    if len(buf) < i + 12 + n:
        return None, i, False
    if sum(buf[i:i + 10 + n]) & 0xFF != buf[i + 10 + n] or buf[i + 11 + n] != 0x16:
        return None, i + 1, True
    address = bytes(buf[i + 1:i + 7])[::-1].hex().upper()
    data = bytes((b - 0x33) & 0xFF for b in buf[i + 10:i + 10 + n])
    return (address, buf[i + 8], data), i + 12 + n, False


def matches(pattern, address):
    return all(p in "Aa" or p == a for p, a in zip(pattern, address))


# -- one meter ------------------------------------------------------------------
@dataclass
class MeterSpec:
    """What a simulated meter is: address, load profile, registers at start, timing, limits."""

    address: str
    base_kw: float = 1.2
    swing_kw: float = 0.8  # daily sine amplitude, peaking at local noon
    noise_kw: float = 0.1
    export_kw: float = 0.0  # solar-like export peak at noon: net power can go negative (reverse energy)
    phases: int = 3
    volts: float = 230.0
    pf: float = 0.95
    start_kwh: float = None  # forward total at start; None: seeded random
    reverse_kwh: float = 0.0
    clock_offset_s: float = 0.0  # meter clock minus true local time
    latency_ms: tuple = None  # None: the bus default
    max_frame_data: int = 200  # L limit of one reply frame; longer values go out as follow-up frames
    meter_number: str = None  # 04000402 / C032; None: the address
    password: str = "000000"  # for writes (14), level 02


class Meter:
    """One simulated meter: energy registers that grow with its load profile, instantaneous values, a clock."""

    def __init__(self, spec, rng, speedup=1.0, utc_offset_s=8 * 3600):
        self.spec = spec
        self.address = spec.address
        self.faults = {}  # fault name -> replies left to spoil (None: until switched off)
        self.speedup = speedup
        self.utc_offset_s = utc_offset_s
        self.clock_offset_s = spec.clock_offset_s
        self._rng = rng
        self._lock = threading.Lock()
        start = spec.start_kwh if spec.start_kwh is not None else rng.uniform(100, 9000)
        total = int(round(start * 100))
        shares = (0.15, 0.3, 0.35)
        self._tariff = [int(total * s) for s in shares]
        self._tariff.append(total - sum(self._tariff))  # tariffs sum to the total exactly
        self._reverse = int(round(spec.reverse_kwh * 100))
        self._residual = 0.0  # energy below 0.01 kWh not yet counted, kWh (signed: import > 0)
        self._last = time.monotonic()
        self._phase_v = [rng.uniform(-3, 3) for _ in range(3)]
        self._p_kw = self._power(self.clock())
        self._snap = None  # (monotonic time, instantaneous values)
        self.followup = None  # the last read's reply split into parts, for follow-up requests (12 / 02)

    # clock: naive local seconds (epoch-style, local time of the meter)
    def clock(self):
        return time.time() + self.utc_offset_s + self.clock_offset_s

    def clock_tuple(self):
        return tuple(time.gmtime(self.clock())[:6])

    def set_clock(self, tm):
        """tm = (year, month, day, hour, minute, second) as the meter's local time."""
        self.clock_offset_s = calendar.timegm(tuple(tm[:6]) + (0, 0, 0)) - time.time() - self.utc_offset_s

    def _power(self, clock_s):
        tod = (clock_s % 86400) / 86400.0
        sun = max(0.0, math.sin(2 * math.pi * (tod - 0.25)))
        load = self.spec.base_kw + self.spec.swing_kw * math.sin(2 * math.pi * (tod - 0.25))
        load = max(0.05, load + self._rng.gauss(0, self.spec.noise_kw))
        return load - self.spec.export_kw * sun

    def _advance(self):
        now = time.monotonic()
        while self._last < now:
            dt = min(5.0, now - self._last)
            self._last += dt
            clock = self.clock() - (now - self._last)
            self._p_kw = self._power(clock)
            self._residual += self._p_kw * dt * self.speedup / 3600.0
            counts = int(self._residual * 100)  # toward zero
            if counts > 0:
                self._tariff[int(TARIFF_BY_HOUR[int(clock % 86400) // 3600]) - 1] += counts
            elif counts < 0:
                self._reverse -= counts
            self._residual -= counts / 100.0

    def _instant(self, p):
        """Instantaneous V/I/P/PF/f: measured once per second, like a meter, so reads agree with each other."""
        now = time.monotonic()
        if self._snap is not None and now - self._snap[0] < 1.0:
            return self._snap[1]
        rng = self._rng
        n = self.spec.phases
        weights = (1.0, 0.0, 0.0) if n == 1 else (0.4, 0.35, 0.25)
        pf = round(min(1.0, max(0.5, self.spec.pf + rng.gauss(0, 0.005))), 3)
        regs = {}
        ptot = 0.0
        for k in range(3):
            v = round(self.spec.volts + self._phase_v[k] + rng.gauss(0, 0.3), 1) if k < n else 0.0
            pk = round(p * weights[k], 4)
            i = round(pk * 1000 / (v * pf), 3) if v else 0.0  # P = V * I * PF per phase
            regs[0x02010100 + 0x100 * k] = v
            regs[0x02020100 + 0x100 * k] = i
            regs[0x02030100 + 0x100 * k] = pk
            ptot += pk
        regs[0x02030000] = round(ptot, 4)
        regs[0x02060000] = pf
        regs[0x02800002] = round(50 + rng.gauss(0, 0.02), 2)
        self._snap = (now, regs)
        return regs

    def registers(self):
        """Current value of every DI this meter serves, as the meter would report it (rounded)."""
        with self._lock:
            self._advance()
            t = list(self._tariff)
            rev = self._reverse
            regs = dict(self._instant(self._p_kw))
        fwd = sum(t)
        regs[0x00000000] = (fwd - rev) / 100  # combined = forward - reverse
        regs[0x00010000] = fwd / 100
        regs[0x00020000] = rev / 100
        regs[0x0001FF00] = [fwd / 100] + [x / 100 for x in t]
        for k in range(4):
            regs[0x00010100 + 0x100 * k] = t[k] / 100
        y, mo, d, h, mi, s = self.clock_tuple()
        regs[0x04000101] = "%04d-%02d-%02d" % (y, mo, d)
        regs[0x04000102] = "%02d:%02d:%02d" % (h, mi, s)
        regs[0x04000401] = self.address
        regs[0x04000402] = self.spec.meter_number or self.address
        regs[0x9010] = fwd / 100
        regs[0xB611] = int(round(regs[0x02010100]))
        regs[0xB621] = round(abs(regs[0x02020100]), 2)
        regs[0xB630] = abs(regs[0x02030000])
        regs[0xC010] = regs[0x04000101]
        regs[0xC011] = regs[0x04000102]
        regs[0xC032] = regs[0x04000402]
        return regs

    def read(self, di):
        """(value, value bytes) of a DI, or None if this meter has no such data."""
        if di not in FORMATS:
            return None
        v = self.registers()[di]
        return v, encode_value(di, v)


# -- the bus ------------------------------------------------------------------------
class MeterBus(SimPeer):
    """Several meters on one simulated RS-485 bus, reached through one TCP port on 127.0.0.1."""

    thread_name = "meter bus"

    def __init__(self, specs, baud=2400, seed=1, latency_ms=(20, 80), speedup=1.0, utc_offset_s=8 * 3600,
                 abnormal_err=ERR_OTHER, host="127.0.0.1"):
        self.rng = random.Random(seed)
        specs = [MeterSpec(address=s) if isinstance(s, str) else s for s in specs]
        self.meters = [Meter(s, random.Random(self.rng.random()), speedup, utc_offset_s) for s in specs]
        self.baud = baud
        self.latency_ms = latency_ms
        self.abnormal_err = abnormal_err
        self.host = host
        self.faults = {}  # bus-wide: fault name -> replies left to spoil (None: until switched off)
        self.served = []
        self.stats = dict.fromkeys(("requests", "replies", "broadcasts", "ignored", "abnormal", "silenced",
                                    "collisions", "bad_rx", "bytes_rx", "bytes_tx", "clients", "drops"), 0)
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
                ss, mm, hh, dd, mo, yy = (int("%02X" % b) for b in data)
                for m in self.meters:
                    m.set_clock((2000 + yy, mo, dd, hh, mm, ss))
            return  # never answer a broadcast
        found = [m for m in self.meters if matches(address, m.address)]
        if not found:
            self.stats["ignored"] += 1
            return
        if len(found) > 1:
            self.stats["collisions"] += 1  # several meters would talk at once: nothing readable
            return
        meter = found[0]
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
                meter.set_clock((y, mo, d, h, mi, s))
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
        raise ValueError("unknown request %r" % (req,))


def _range(text):
    lo, _, hi = text.partition(":")
    return float(lo), float(hi or lo)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.sim.meter", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--meter", action="append", default=[], help="12-digit address (repeat for several)")
    ap.add_argument("--baud", type=int, default=2400)
    ap.add_argument("--latency-ms", type=_range, default=(20.0, 80.0), help="lo:hi reply latency")
    ap.add_argument("--speedup", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-frame-data", type=int, default=200)
    ap.add_argument("--control-port", type=int, default=None)
    args = ap.parse_args(argv)
    specs = [MeterSpec(address=a, max_frame_data=args.max_frame_data) for a in (args.meter or ["000072007201"])]
    bus = MeterBus(specs, baud=args.baud, seed=args.seed, latency_ms=args.latency_ms, speedup=args.speedup)
    return bus.serve(args.port, args.control_port)


if __name__ == "__main__":
    sys.exit(main())
