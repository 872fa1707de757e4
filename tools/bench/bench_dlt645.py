"""Meter link efficiency: the unix-port master reads 6 DIs from 3 simulated meters at 2400 baud, zero latency.

Figures: cycle time against the pure wire time of every byte exchanged (requests with their FE preamble,
replies with theirs; 11 bits per byte), their ratio (target <= 1.25), master CPU per read, codec speed.
Then firmware/metering polling a single-phase meter that refuses block reads (every `inst` item, 2400 baud,
zero latency): requests and bus time of the first poll (it learns the refusals) against a poll after it,
and the size of the capabilities file on flash.
"""

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.sim.meter import MeterBus, MeterSpec

ROOT = Path(__file__).resolve().parents[2]
BAUD = 2400
CYCLES = 3
METERS = ("000072007201", "000072007202", "000072007203")
DIS = ("00010000", "00010100", "00010200", "00020000", "02010100", "02020100")
CODEC_ROUNDS = 2000

_SCRIPT = r"""
import sys
sys.path[:0] = [%(lib)r]
import asyncio, json, time
import dlt645
from dlt645_master import Master
from tcpuart import TcpUart

METERS = %(meters)r
DIS = [int(d, 16) for d in %(dis)r]


async def main(port, cycles):
    m = Master(TcpUart("127.0.0.1:%%d" %% port), baud=%(baud)d, timeout_ms=1000)
    await m.read(METERS[0], DIS[0])  # connect and warm up, not measured
    for k in m.stats:
        m.stats[k] = 0
    t0 = time.ticks_ms()
    for _ in range(cycles):
        for a in METERS:
            for di in DIS:
                await m.read(a, di)
    ms = time.ticks_diff(time.ticks_ms(), t0)
    reply = dlt645.encode("000072007201", 0x91, dlt645.di_bytes(0x00010000) + bytes(4))
    buf = b"\xfe\xfe\xfe\xfe" + reply
    t1 = time.ticks_us()
    for _ in range(%(rounds)d):
        f = dlt645.decode(buf)
        dlt645.value(0x00010000, f.data[4:])
    dec = time.ticks_diff(time.ticks_us(), t1)
    t1 = time.ticks_us()
    for _ in range(%(rounds)d):
        dlt645.read_request("000072007201", 0x00010000)
    enc = time.ticks_diff(time.ticks_us(), t1)
    print(json.dumps({"ms": ms, "stats": m.stats, "decode_us": dec / %(rounds)d, "encode_us": enc / %(rounds)d}))


if len(sys.argv) > 2:
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


_POLL_SCRIPT = r"""
import sys
sys.path[:0] = [%(lib)r, %(root)r]
import asyncio, json, time
from dlt645_master import Master
from tcpuart import TcpUart
from firmware.metering import Metering


class Clock:
    t = 1795430400

    def now(self):
        return self.t

    def stamp(self):
        return self.t, "gnss"


class Log:
    def debug(self, *a):
        pass

    info = warning = debug


class Terminal:
    def __init__(self, port):
        self.cfg = {"state_dir": %(state)r, "inst": ["v", "i", "p", "pf", "f"], "meters": [%(meter)r],
                    "log_level": "info", "time_sync_meters": False}
        self.master = Master(TcpUart("127.0.0.1:%%d" %% port), baud=%(baud)d, timeout_ms=1000)
        self.clock, self.log = Clock(), Log()

    def emit_event(self, kind, data=None):
        pass

    def store(self, kind, body):
        pass


async def main(port, polls):
    t = Terminal(port)
    m = Metering(t)
    out = []
    for _ in range(polls):
        before = dict(t.master.stats)
        t0 = time.ticks_ms()
        r = await m.poll_and_store(%(meter)r)
        st = t.master.stats
        out.append({"ms": time.ticks_diff(time.ticks_ms(), t0), "ok": r is not None,
                    "requests": st["requests"] - before["requests"], "abnormal": st["abnormal"] - before["abnormal"],
                    "bytes": st["bytes_tx"] + st["bytes_rx"] - before["bytes_tx"] - before["bytes_rx"]})
        t.clock.t += 900
    print(json.dumps(out))


asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""
POLLS = 4


def _micropython():
    exe = Path(sys.executable).parent / "micropython"
    return str(exe) if exe.exists() else "micropython"


def _child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(script, *args):
    cpu = _child_cpu()
    p = subprocess.run([_micropython(), script] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    if p.returncode:
        raise RuntimeError("bench script failed:\n" + p.stdout + p.stderr)
    return p.stdout, _child_cpu() - cpu


def run():
    figures = _master()
    figures.update(_single_phase_poll())
    return figures


def _single_phase_poll():
    import json

    meter = METERS[0]
    with tempfile.TemporaryDirectory(prefix="bench_caps_") as state:
        with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="bench_poll_", delete=False) as f:
            f.write(_POLL_SCRIPT % {"lib": str(ROOT / "lib"), "root": str(ROOT), "state": state, "meter": meter,
                                    "baud": BAUD})
        bus = MeterBus([MeterSpec(meter, phases=1, block=False)], baud=BAUD, seed=1, latency_ms=(0, 0))
        try:
            out, _ = _run(f.name, bus.start(), POLLS)
        finally:
            bus.stop()
            os.unlink(f.name)
        caps_bytes = os.path.getsize(os.path.join(state, "meter_caps.json"))
    polls = json.loads(out.strip().splitlines()[-1])
    if not all(p["ok"] for p in polls) or any(p["abnormal"] for p in polls[1:]):
        raise RuntimeError("unexpected poll results: %r" % polls)
    first, later = polls[0], polls[1:]
    return {
        "single_phase_first_poll_requests": first["requests"],
        "single_phase_first_poll_refusals": first["abnormal"],
        "single_phase_first_poll_ms": first["ms"],
        "single_phase_poll_requests": later[-1]["requests"],
        "single_phase_poll_ms": round(sum(p["ms"] for p in later) / len(later), 1),
        "single_phase_poll_bytes": later[-1]["bytes"],
        "meter_caps_file_bytes": caps_bytes,
    }


def _master():
    import json

    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="bench_dlt645_", delete=False) as f:
        f.write(_SCRIPT % {"lib": str(ROOT / "lib"), "meters": list(METERS), "dis": list(DIS), "baud": BAUD,
                           "rounds": CODEC_ROUNDS})
    bus = MeterBus([MeterSpec(a) for a in METERS], baud=BAUD, seed=1, latency_ms=(0, 0))
    try:
        port = bus.start()
        _, idle_cpu = _run(f.name)  # start-up and imports only: subtracted from the CPU figure
        out, cpu = _run(f.name, port, CYCLES)
    finally:
        bus.stop()
        os.unlink(f.name)
    r = json.loads(out.strip().splitlines()[-1])
    st = r["stats"]
    reads = CYCLES * len(METERS) * len(DIS)
    if st["replies"] != reads or st["retries"]:
        raise RuntimeError("unexpected retries or missing replies: %r" % st)
    wire_ms = (st["bytes_tx"] + st["bytes_rx"]) * 11 * 1000 / BAUD
    # the measured loop plus CODEC_ROUNDS of codec work; take the codec part out of the per-read CPU
    codec_s = CODEC_ROUNDS * (r["decode_us"] + r["encode_us"]) / 1e6
    return {
        "dlt645_reads_per_cycle": len(METERS) * len(DIS),
        "dlt645_cycle_ms": round(r["ms"] / CYCLES, 1),
        "dlt645_wire_ms_per_cycle": round(wire_ms / CYCLES, 1),
        "dlt645_cycle_over_wire_ratio": round(r["ms"] / wire_ms, 3),
        "dlt645_read_ms": round(r["ms"] / reads, 1),
        "dlt645_bytes_per_read": round((st["bytes_tx"] + st["bytes_rx"]) / reads, 1),
        "dlt645_master_cpu_ms_per_read": round(max(0.0, cpu - idle_cpu - codec_s) * 1000 / reads, 2),
        "dlt645_decode_us_per_frame_mp": round(r["decode_us"], 1),
        "dlt645_encode_us_per_request_mp": round(r["encode_us"], 1),
    }
