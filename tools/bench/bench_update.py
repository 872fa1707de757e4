"""Signed update: Ed25519 verification time, power cuts during updates, and the bundle's download time.

The MicroPython verification figures come from tests/port/mp/ed25519_bench.py (one JSON line); the long
form of the power-cut proof is tests/port/mp/update_powercut.py with more trials than `make test` runs.
The download is measured end to end (firmware under the unix port, simulators, mosquitto): wire bytes
and round trips per bundle, and the wall time through the zero-latency simulators. The time at a stated
link is computed from those counts: every chunk costs one round trip, and every byte crosses the
modem's UART (both ways) and the radio link.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

from tools.mpunix import micropython_path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "port" / "mp" / "ed25519_bench.py"
MP_ITERATIONS = 50
CPY_ITERATIONS = 200
POWERCUT_TRIALS = 1300  # about 1000 cut points
# The stated link: the modem's UART at 115200 baud (10 bits a byte), 200 ms round trip through the
# mobile network and broker, 100 kbit/s effective radio throughput (a weak-signal Cat.1 cell).
LINK = {"uart_baud": 115200, "rtt_ms": 200, "radio_kbit_s": 100}


def _micropython():
    exe = micropython_path()
    if not exe:
        raise RuntimeError("no `micropython` command; run `make venv`")
    p = subprocess.run([exe, str(SCRIPT), str(MP_ITERATIONS)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    if p.returncode:
        raise RuntimeError("ed25519_bench.py failed:\n" + p.stdout + p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def _cpython():
    sys.path.insert(0, str(ROOT / "lib"))
    try:
        import ed25519
    finally:
        sys.path.remove(str(ROOT / "lib"))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    msg = b"x" * 600  # about the size of a manifest
    sig = key.sign(msg)
    ed25519.verify(pub, msg, sig)
    t0 = time.perf_counter()
    for _ in range(CPY_ITERATIONS):
        ed25519.verify(pub, msg, sig)
    return {"cpython_ed25519_verify_ms": round((time.perf_counter() - t0) / CPY_ITERATIONS * 1000, 3)}


def _powercut():
    exe = micropython_path()
    p = subprocess.run([exe, str(ROOT / "tests/port/mp/update_powercut.py"), str(POWERCUT_TRIALS), "14"], cwd=ROOT,
                       capture_output=True, text=True, timeout=1800)
    summary = json.loads([line for line in p.stdout.splitlines() if line.startswith("{")][-1])
    if summary["failures"]:
        raise RuntimeError("update power cuts failed: %s" % summary["examples"])
    return {"update_powercut_cut_points": summary["cut_points"], "update_powercut_failures": summary["failures"]}


def _download():
    import shutil
    import tempfile

    from tools import release
    from tools.rig import TerminalRig

    tmp = Path(tempfile.mkdtemp(prefix="bench-update-"))
    rig = None
    try:
        pub = release.keygen(tmp / "release.key")
        tree = release.rehearsal_tree(tmp / "tree", "9.9.9")
        release.pack(tmp / "release.key", tree, tmp / "bundle", "9.9.9")
        bundle = release.Bundle(tmp / "bundle")
        flash = tmp / "flash"
        shutil.copytree(ROOT / "build" / "mpy", flash)
        rig = TerminalRig(tmp / "rig", imei="861234567890199", code=flash,
                          cfg={"update_pubkey": pub, "poll_s": 60, "heartbeat_s": 60})
        rig.wait("online", lambda: rig.of("register"), 90)
        rig.bundle = bundle
        up0, down0 = rig.modem.stats["tcp_bytes_up"], rig.modem.stats["tcp_bytes_down"]
        t0 = time.monotonic()
        rig.command("update", bundle.offer())

        def staged():
            return [e for e in rig.of("event") if e.get("kind") == "update" and e["data"].get("state") == "staged"]

        rig.wait("staged", staged, 300)
        wall = time.monotonic() - t0
        up = rig.modem.stats["tcp_bytes_up"] - up0
        down = rig.modem.stats["tcp_bytes_down"] - down0
        rig.wait("confirmed", lambda: [e for e in rig.of("event") if e.get("kind") == "update"
                                       and e["data"].get("state") == "confirmed"], 120)
        chunks = rig.chunks_served
        uart_s = (up + down) * 10 / LINK["uart_baud"]
        radio_s = (up + down) * 8 / (LINK["radio_kbit_s"] * 1000)
        stated = chunks * LINK["rtt_ms"] / 1000 + uart_s + radio_s
        return {
            "update_bundle_bytes": bundle.size, "update_chunks": chunks,
            "update_wire_bytes_down": down, "update_wire_bytes_up": up,
            "update_wire_overhead_ratio": round((up + down) / bundle.size, 3),
            "update_download_s_unix_sims": round(wall, 2),
            "update_download_s_at_115200_uart_200ms_rtt_100kbit": round(stated, 1),
        }
    finally:
        if rig is not None:
            rig.close()
        shutil.rmtree(tmp, ignore_errors=True)


def run():
    figures = {}
    figures.update(_micropython())
    figures.update(_cpython())
    figures.update(_download())
    figures.update(_powercut())
    return dict(sorted(figures.items()))
