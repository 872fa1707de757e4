"""Cost of handling AT responses: lib/atengine + lib/quectel under the unix port against the modem simulator.

The simulator runs in-process with no module delays (delay_scale 0), so round
trips measure the engine, the loopback and the simulator's own Python. Engine
CPU per response is measured without I/O by feeding recorded replies; the
MicroPython process's CPU time per command sent (from the kernel, start-up
excluded) covers the whole path: asyncio, the UART stand-in's syscalls, the engine.
"""

import json
import resource
import socket
import sys
import threading
from pathlib import Path

from tools.sim.modem import ModemSim

ROOT = Path(__file__).resolve().parents[2]

ROUNDS = 1000


def _harness():
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import harness

    return harness


def _echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(30)

    def serve():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        with c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                try:
                    d = c.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                c.sendall(d)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def _run_once(port, rounds):
    """One MicroPython run: its JSON figures plus its CPU seconds (user + system, from the kernel)."""
    srv, t = _echo_server()
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        rc, out = _harness().run_micropython(ROOT / "tests/port/mp/modem_bench.py", port, srv.getsockname()[1],
                                             rounds, timeout=120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        srv.close()
        t.join(5)
    if rc != 0:
        raise RuntimeError("modem_bench.py failed:\n" + out)
    r = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    r["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return r


def run():
    sim = ModemSim(delay_scale=0.0)
    port = sim.start()
    try:
        short = _run_once(port, ROUNDS // 5)
        r = _run_once(port, ROUNDS)
    finally:
        sim.stop()
    # The difference between a short and a long run leaves out start-up, module compilation and the
    # I/O-free parsing loop (the same in both).
    cpu_us = (r["cpu_s"] - short["cpu_s"]) * 1e6
    return {
        "at_csq_round_trip_us": round(r["csq_us"], 1),
        "at_qird_1k_round_trip_us": round(r["qird_1k_us"], 1),
        "at_qisend_1k_us": round(r["qisend_1k_us"], 1),
        "engine_cpu_us_per_csq_response": round(r["parse_csq_us"], 1),
        "engine_cpu_us_per_qird_1k_response": round(r["parse_qird_1k_us"], 1),
        "mp_process_cpu_us_per_at_command": round(cpu_us / max(1, r["commands"] - short["commands"]), 1),
        "modem_bringup_ms_no_delays": round(r["bringup_ms"], 1),
        "at_commands_sent": r["commands"] + short["commands"],
        "at_timeouts": r["timeouts"] + short["timeouts"],
        "sim_tcp_bytes_up": sim.stats["tcp_bytes_up"],
        "sim_tcp_bytes_down": sim.stats["tcp_bytes_down"],
    }


if __name__ == "__main__":
    print(run())
