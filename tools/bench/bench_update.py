"""Signed update: Ed25519 verification time under the MicroPython unix port (and CPython for comparison).

The MicroPython figures come from tests/port/mp/ed25519_bench.py (one JSON line).
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


def run():
    figures = {}
    figures.update(_micropython())
    figures.update(_cpython())
    return dict(sorted(figures.items()))
