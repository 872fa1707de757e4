"""Ed25519 signature verification (RFC 8032, section 5.1), pure Python on arbitrary-precision ints.

Only verification lives here: signing keys never leave the release host. Points are kept in extended
homogeneous coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z (RFC 8032, 5.1.4), so the
double-scalar multiplication needs a single inversion at the end.
"""

from sha512 import sha512

_P = 2 ** 255 - 19
_L = 2 ** 252 + 27742317777372353535851937790883648493  # order of the base point
_consts = None  # (d, 2*d, sqrt(-1), B): computed on the first verification, not at import


class BadSignature(ValueError):
    """The signature does not verify, or the key or signature is malformed."""


def _inv(z):
    return pow(z, _P - 2, _P)


def _recover_x(y, sign, d, sqrt_m1):
    # RFC 8032, 5.1.3: x^2 = (y^2 - 1) / (d y^2 + 1)
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (d * y * y + 1) % _P
    v3 = v * v * v % _P
    x = u * v3 * pow(u * v3 * v3 * v, (_P - 5) // 8, _P) % _P
    vx2 = v * x * x % _P
    if vx2 == (-u) % _P:
        x = x * sqrt_m1 % _P
    elif vx2 != u:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x


def _constants():
    global _consts
    if _consts is None:
        d = -121665 * _inv(121666) % _P
        sqrt_m1 = pow(2, (_P - 1) // 4, _P)
        by = 4 * _inv(5) % _P
        bx = _recover_x(by, 0, d, sqrt_m1)
        _consts = (d, 2 * d % _P, sqrt_m1, (bx, by, 1, bx * by % _P))
    return _consts


def _add(p, q, d2):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * d2 * t2 % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = b - a, dd - c, dd + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _double(p):
    x1, y1, z1, _ = p
    a = x1 * x1 % _P
    b = y1 * y1 % _P
    c = 2 * z1 * z1 % _P
    h = a + b
    e = h - (x1 + y1) * (x1 + y1)
    g = a - b
    f = c + g
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _encode(p):
    x, y, z, _ = p
    zi = _inv(z)
    x = x * zi % _P
    y = y * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(s, d, sqrt_m1):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign, d, sqrt_m1)
    if x is None:
        return None
    return x, y, 1, x * y % _P


def _double_mul(s, b, k, a, d2):
    """[s]b + [k]a by one shared double-and-add pass (Straus); s, k < 2**253."""
    ab = _add(a, b, d2)
    q = (0, 1, 1, 0)  # neutral element
    for i in range(252, -1, -1):  # s < L and k < L: 253 bits
        q = _double(q)
        bit_s = (s >> i) & 1
        bit_k = (k >> i) & 1
        if bit_s and bit_k:
            q = _add(q, ab, d2)
        elif bit_s:
            q = _add(q, b, d2)
        elif bit_k:
            q = _add(q, a, d2)
    return q


def verify(public_key, message, signature):
    """Raise BadSignature unless `signature` (64 bytes) is a valid Ed25519 signature of `message` by `public_key`."""
    if len(public_key) != 32 or len(signature) != 64:
        raise BadSignature("length")
    d, d2, sqrt_m1, base = _constants()
    a = _decode(bytes(public_key), d, sqrt_m1)
    if a is None:
        raise BadSignature("public key is not a point")
    r_bytes = bytes(signature[:32])
    s = int.from_bytes(bytes(signature[32:]), "little")
    if s >= _L:
        raise BadSignature("S out of range")
    h = sha512(r_bytes)
    h.update(bytes(public_key))
    h.update(message)
    k = int.from_bytes(h.digest(), "little") % _L
    # R' = [S]B - [k]A must encode to exactly the R of the signature (non-canonical R never matches)
    neg_a = ((_P - a[0]) % _P, a[1], a[2], (_P - a[3]) % _P)
    if _encode(_double_mul(s, base, k, neg_a, d2)) != r_bytes:
        raise BadSignature("mismatch")


def is_valid(public_key, message, signature):
    """True when the signature verifies; never raises on malformed input of the right types."""
    try:
        verify(public_key, message, signature)
    except BadSignature:
        return False
    return True
