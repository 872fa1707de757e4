"""Time of one Ed25519 verification and of pure SHA-512 under the unix port; prints one JSON line.

    micropython tests/port/mp/ed25519_bench.py <iterations>
"""

import json
import sys
import time

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib", _root]

import ed25519  # noqa: E402
from sha512 import sha512  # noqa: E402

# RFC 8032, 7.1, TEST 3
PK = bytes.fromhex("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025")
SIG = bytes.fromhex("6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
                    "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a")
MSG = b"\xaf\x82"


def main(n):
    ed25519.verify(PK, MSG, SIG)  # constants computed once, before timing
    t0 = time.ticks_us()
    for _ in range(n):
        ed25519.verify(PK, MSG, SIG)
    verify_ms = time.ticks_diff(time.ticks_us(), t0) / n / 1000
    block = bytes(1024)
    t0 = time.ticks_us()
    h = sha512(pure=True)
    for _ in range(16):
        h.update(block)
    h.digest()
    sha_ms = time.ticks_diff(time.ticks_us(), t0) / 16 / 1000
    print(json.dumps({"mp_ed25519_verify_ms": round(verify_ms, 2), "mp_sha512_pure_ms_per_kib": round(sha_ms, 2)}))


main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
