"""Ed25519 signing for tests only (RFC 8032, 5.1.5/5.1.6), built on lib/ed25519's point arithmetic.

Terminals never sign; the release tool signs with the `cryptography` package. This lets the portable
tests make signed manifests under MicroPython too.
"""

import ed25519
from sha512 import sha512


def _mul_base(n):
    d, d2, _, base = ed25519._constants()
    return ed25519._double_mul(n % ed25519._L, base, 0, base, d2)


def keypair(seed):
    """(secret scalar, prefix, public key bytes) from a 32-byte seed."""
    h = sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:], ed25519._encode(_mul_base(a))


def sign(seed, msg):
    a, prefix, pub = keypair(seed)
    h = sha512(prefix)
    h.update(msg)
    r = int.from_bytes(h.digest(), "little") % ed25519._L
    rb = ed25519._encode(_mul_base(r))
    h = sha512(rb)
    h.update(pub)
    h.update(msg)
    k = int.from_bytes(h.digest(), "little") % ed25519._L
    s = (r + k * a) % ed25519._L
    return rb + s.to_bytes(32, "little")


def public(seed):
    return keypair(seed)[2]
