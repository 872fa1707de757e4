"""lib/ed25519 accepts what the `cryptography` package signs and refuses every tampered variant."""

import random
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness import ROOT

sys.path.insert(0, str(ROOT / "lib"))
import ed25519  # noqa: E402
from sha512 import sha512  # noqa: E402


def _raw(key):
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_signatures_from_cryptography_verify_and_tampering_fails():
    rng = random.Random(14)
    for i in range(40):
        key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        pub = _raw(key)
        msg = rng.randbytes(rng.randint(0, 700))
        sig = key.sign(msg)
        assert ed25519.is_valid(pub, msg, sig), i
        bad = bytearray(sig)
        bad[rng.randrange(64)] ^= 1 << rng.randrange(8)
        assert not ed25519.is_valid(pub, msg, bytes(bad))
        if msg:
            m2 = bytearray(msg)
            m2[rng.randrange(len(m2))] ^= 0x80
            assert not ed25519.is_valid(pub, bytes(m2), sig)
        other = _raw(Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)))
        assert not ed25519.is_valid(other, msg, sig)


def test_pure_sha512_matches_hashlib_at_every_padding_boundary():
    import hashlib

    rng = random.Random(512)
    for n in list(range(0, 260)) + [1000, 4096, 10007]:
        data = rng.randbytes(n)
        assert sha512(data, pure=True).digest() == hashlib.sha512(data).digest(), n
