"""The terminal's budgets: heap, code size, bytes on the wire per day, query latency, CPU per poll cycle.

Everything runs the real firmware from .mpy under the unix port with the simulators and a real mosquitto.
"""

import os
import statistics
import tempfile
import time
from pathlib import Path

from tools import soak
from tools.procs import ROOT
from tools.rig import TerminalRig

_DAY = 86400
# the defaults of firmware/config.py
_DEFAULT_POLL_S, _DEFAULT_HEARTBEAT_S, _DEFAULT_KEEPALIVE_S = 900, 300, 600
_FULL_EVERY = 12  # firmware/app.py: a full heartbeat at least every 12th


def _micropython_pid(launcher_pid):
    try:
        kids = Path("/proc/%d/task/%d/children" % (launcher_pid, launcher_pid)).read_text().split()
        return int(kids[0])
    except (OSError, IndexError, ValueError):
        return None


def _cpu_s(pid):
    fields = Path("/proc/%d/stat" % pid).read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def code_size():
    mpy = ROOT / "build" / "mpy"
    ours = sum(p.stat().st_size for p in mpy.rglob("*.mpy") if "umqtt" not in p.parts and "logging" not in p.parts)
    total = sum(p.stat().st_size for p in mpy.rglob("*.mpy"))
    return {"mpy_bytes_ours": ours, "mpy_bytes_with_packages": total}


_IMPORTS = """
import gc, sys
gc.threshold(4096)  # as main.py loads the code
sys.path.append("lib")
gc.collect()
base = gc.mem_alloc()
from firmware import app
gc.collect()
print(gc.mem_alloc() - base, gc.mem_alloc() + gc.mem_free())
"""


def _micropython():
    import sys

    return str(Path(sys.executable).parent / "micropython")


def _import_code(heap_kb=None):
    """Import the firmware from .mpy (optionally in a heap of heap_kb KB): (code bytes, heap total) or None."""
    import subprocess

    argv = [_micropython()] + (["-X", "heapsize=%dK" % heap_kb] if heap_kb else []) + ["-c", _IMPORTS]
    out = subprocess.run(argv, cwd=ROOT / "build" / "mpy", capture_output=True, text=True, timeout=60).stdout.split()
    return (int(out[0]), int(out[1])) if len(out) == 2 else None


_NONCES = """
import gc, json, os, sys
sys.path[:0] = ["", "lib"]
from firmware.auth import Auth, sign
KEY, TID, NOW, D = "00" * 32, "861234567890123", 1795430400, sys.argv[1]
def env(i, ts):
    body = '{"id":"c%d","op":"status","args":{},"ts":%d,"nonce":"%064d"}' % (i, ts, i)
    return json.dumps({"body": body, "mac": sign(KEY, TID, body)})
gc.collect()
base = gc.mem_alloc()
a = Auth(TID, KEY, 300, D + "/nonces.bin")
for i in range(600):
    a.check(env(i, NOW + i // 4), NOW + i // 4, True)
gc.collect()
live = gc.mem_alloc() - base
e = env(10 ** 6, NOW + 150)
gc.collect()
gc.disable()
m0 = gc.mem_alloc()
a.check(e, NOW + 150, True)
per = gc.mem_alloc() - m0
gc.enable()
print(live, per, os.stat(D + "/nonces.bin")[6])
"""


def nonce_store_cost():
    """The replay store after 600 commands with 64-character nonces (512 remembered): heap it keeps, heap one
    more accepted command allocates (the whole check: JSON, HMAC, store, append), and its file on flash."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="bdmeter-nonces-") as d:
        out = subprocess.run([_micropython(), "-c", _NONCES, d], cwd=ROOT / "build" / "mpy", capture_output=True,
                             text=True, timeout=120).stdout.split()
    if len(out) != 3:
        return {}
    return {"nonce_store_heap_bytes_live_512": int(out[0]), "command_check_heap_bytes_allocated": int(out[1]),
            "nonce_store_file_bytes": int(out[2])}


def code_heap():
    """Heap taken by the imported code alone, and the smallest heap that can load it at all.

    On the unix port an imported .mpy lives in the GC heap: its bytecode, its qstrs, its constant objects, and
    the holes the loader's short-lived buffers leave between them. A board with the modules frozen by
    manifest.py keeps all of that in flash.
    """
    code, total = _import_code()
    return {"heap_bytes_code_after_imports": code, "heap_kb_smallest_to_load_code": _smallest(_import_code, 64, 512),
            "heap_bytes_total_default_heap": total}


def _smallest(passes, lo, hi, step=1):
    """Bisect for the smallest KB at which passes(kb) holds: it is assumed to fail at lo and is checked at hi
    (None if it fails there too); to within `step` KB."""
    if not passes(hi):
        return None
    while hi - lo > step:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi


def wire_and_heap(workdir):
    """Run a while with short intervals; derive bytes per message from the modem's TCP counters; scale to a day."""
    rig = TerminalRig(workdir, delay_scale=0.0, cfg={"poll_s": 2, "heartbeat_s": 3, "gnss_s": 2})
    try:
        rig.wait("connected", lambda: rig.of("register"), 60)
        time.sleep(2)
        up0, down0 = rig.modem.stats["tcp_bytes_up"], rig.modem.stats["tcp_bytes_down"]
        n_e0, n_h0 = len(rig.of("energy")), len(rig.of("heartbeat"))
        time.sleep(30)
        up1, down1 = rig.modem.stats["tcp_bytes_up"], rig.modem.stats["tcp_bytes_down"]
        energy, beats = rig.of("energy")[n_e0:], rig.of("heartbeat")[n_h0:]
        rig_full_beats = rig.of("heartbeat")
        hb = [h for h in rig_full_beats if "err" in h][-1]
    finally:
        rig.close()
    topic = len("bdmeter/861234567890123/energy")
    # MQTT framing per QoS 1 publish: fixed header 3, topic length 2, packet id 2; PUBACK 4 bytes back.
    e_up = statistics.mean(len(_compact(e)) for e in energy) + topic + 7
    short = [h for h in beats if "err" not in h] or beats
    full = [h for h in rig_full_beats if "err" in h]
    h_short = statistics.mean(len(_compact(h)) for h in short) + topic + 3  # QoS 0: no packet id, no PUBACK
    h_full = statistics.mean(len(_compact(h)) for h in full) + topic + 3
    beats_per_day = _DAY / _DEFAULT_HEARTBEAT_S
    per_day = {
        "energy": (_DAY / _DEFAULT_POLL_S) * (e_up + 4),
        "heartbeat": beats_per_day * ((_FULL_EVERY - 1) * h_short + h_full) / _FULL_EVERY,
        # PINGREQ/PINGRESP (2 + 2 bytes): heartbeats keep the uplink busy; a probe fills each silence of the
        # downlink longer than the keepalive (between PUBACKs when readings are rarer than that)
        "keepalive": (_DAY / _DEFAULT_POLL_S if _DEFAULT_POLL_S > _DEFAULT_KEEPALIVE_S else 0) * 4,
    }
    measured = (up1 - up0) + (down1 - down0)
    modelled = len(energy) * (e_up + 4) + sum(len(_compact(h)) + topic + 3 for h in beats)
    return {
        "wire_bytes_per_energy_message": round(e_up + 4),
        "wire_bytes_per_heartbeat_short": round(h_short),
        "wire_bytes_per_heartbeat_full": round(h_full),
        "wire_bytes_per_day_default_intervals": round(sum(per_day.values())),
        "wire_kb_per_day_default_intervals": round(sum(per_day.values()) / 1024, 1),
        "wire_model_vs_modem_counters": round(modelled / measured, 3) if measured else None,
        "wire_measured_bytes_30s_short_intervals": measured,
        "heap_peak_bytes_default_heap": hb.get("heap_peak"),
        "heap_free_bytes_default_heap": hb.get("heap"),
    }


def _compact(obj):
    import json

    return json.dumps(obj, separators=(",", ":"))


def latency_and_cpu(workdir):
    """Query -> answer latency through zero-delay simulators, and CPU time per meter poll cycle."""
    rig = TerminalRig(workdir, delay_scale=0.0, latency_ms=(0, 0),
                      cfg={"poll_s": 1, "heartbeat_s": 3600, "gnss_s": 3600})
    try:
        rig.wait("connected", lambda: rig.of("register"), 60)
        times = []
        for _ in range(60):
            t0 = time.monotonic()
            rid, _ = rig.command("query", {"what": ["address", "position", "energy"]})
            rig.answer(rid, timeout=20)
            times.append((time.monotonic() - t0) * 1000)
        pid = _micropython_pid(rig.fw.pid)
        n0, c0 = len(rig.of("energy")), _cpu_s(pid)
        time.sleep(20)
        n1, c1 = len(rig.of("energy")), _cpu_s(pid)
    finally:
        rig.close()
    times.sort()
    return {
        "query_latency_ms_p50": round(times[len(times) // 2], 1),
        "query_latency_ms_p99": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
        "cpu_ms_per_poll_cycle": round((c1 - c0) * 1000 / max(1, n1 - n0), 2),
        "poll_cycles_measured": n1 - n0,
    }


def commands_in_small_heap(workdir, heap="288K", seconds=120):
    """Ordinary signed commands (status and query, one every ~0.3 s) for `seconds` in a `heap` heap: answered,
    MemoryErrors, self-resets, and the nonce store's file at the end."""
    rig = TerminalRig(workdir, heapsize=heap)
    sent = answered = 0
    try:
        rig.wait("first readings", lambda: len(rig.of("energy")) >= 2, 90)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            query = sent % 2 == 1
            rid, _ = rig.command("query" if query else "status", {"what": ["address", "energy"]} if query else {})
            sent += 1
            try:
                answered += bool(rig.answer(rid, 20).get("ok"))
            except AssertionError:
                pass
            time.sleep(0.3)
        resets = [e for e in rig.of("event") if e.get("kind") == "reboot" and e["data"].get("why")]
        log = rig.fw.output()
        store = Path(workdir) / "flash" / "nonces.bin"
    finally:
        rig.close()
    return {"commands_small_heap": heap, "commands_small_heap_sent": sent, "commands_small_heap_answered": answered,
            "commands_small_heap_memory_errors": log.count("MemoryError"),
            "commands_small_heap_self_resets": len(resets),
            "nonce_store_file_bytes_after": store.stat().st_size if store.exists() else None}


# the commands form of the short soak: a signed query after every cycle, and each command fault once
_HEAP_SOAK_FAULTS = ("cmd:flood", "clock:gnss_jump", "cmd:oversize", "power:cut", "modem:peer_close")


def smallest_heap(workdir, lo=16):
    """The smallest -X heapsize (KB) at which a short soak with commands still passes: bisection to 4 KB.

    `lo` is a heap known to fail (below the smallest that loads the code, nothing can pass). The soak sends a
    signed query every cycle and goes through a bad-MAC flood, oversize messages and a GNSS clock jump, so
    the figure covers the command path (its nonce store, queue and answers), not only readings."""
    tried = {}

    def passes(kb):
        # a MemoryError is a failure even when the terminal recovers from it by resetting
        figures = soak.run(cycles=len(_HEAP_SOAK_FAULTS), seed=11, heapsize="%dK" % kb,
                           workdir=Path(workdir) / ("heap%d" % kb), log=lambda *a: None, fail_on="MemoryError",
                           commands=True, sequence=_HEAP_SOAK_FAULTS)
        tried[kb] = figures["passed"]
        return figures["passed"]

    kb = _smallest(passes, lo, 448, step=4)
    return {"smallest_heap_kb_soak_with_commands_passes": kb,
            "heap_tried_kb": {str(k): v for k, v in sorted(tried.items())}}


def _working_set(out):
    """What running adds to loading: the soak's smallest heap beyond the smallest heap that loads the code,
    and the live data after a collection (the full heartbeat's free heap, taken just after gc.collect)."""
    load, soak_kb = out.get("heap_kb_smallest_to_load_code"), out.get("smallest_heap_kb_soak_with_commands_passes")
    if load and soak_kb:
        out["heap_kb_running_beyond_loading"] = soak_kb - load
    total, free, code = (out.get("heap_bytes_total_default_heap"), out.pop("heap_free_bytes_default_heap", None),
                         out.get("heap_bytes_code_after_imports"))
    if total and free is not None and code:
        out["heap_bytes_live_data_running"] = total - free - code
    return out


def run():
    out = code_size()
    out.update(code_heap())
    out.update(nonce_store_cost())
    with tempfile.TemporaryDirectory(prefix="bdmeter-bench-") as d:
        out.update(wire_and_heap(Path(d) / "wire"))
        out.update(latency_and_cpu(Path(d) / "latency"))
        try:
            out.update(commands_in_small_heap(Path(d) / "commands"))
        except AssertionError as e:  # a heap too small to start in is a figure too, not the end of the bench
            out["commands_small_heap_failed"] = str(e).splitlines()[0]
        out.update(smallest_heap(d, lo=(out.get("heap_kb_smallest_to_load_code") or 17) - 1))
    return _working_set(out)
