"""Load-profile records (负荷记录): what an encoder written here from the standard's layout builds (any subset of
the six groups, signed values, either length convention) the codec reads back exactly; mutated records give a
value or ValueError, nothing else; the request data for the three modes."""

import calendar
import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

import dlt645_frozen as fz
from fuzzkit import point_mutate

# (group, [(field, bytes each, signed, count)]) as DL/T 645-2007 appendix lists the record
LAYOUT = [
    ("vif", [("v", 2, False, 3), ("i", 3, True, 3), ("f", 2, False, 1)]),
    ("power", [("p", 3, True, 4), ("q", 3, True, 4)]),
    ("pf", [("pf", 2, True, 4)]),
    ("energy", [("fwd", 4, False, 1), ("rev", 4, False, 1), ("q_comb", 4, True, 2)]),
    ("quadrants", [("q_quad", 4, False, 4)]),
    ("demand", [("demand", 3, True, 2)]),
]


def bcd(value, nbytes, signed):
    digits = "%0*d" % (2 * nbytes, abs(value))
    out = bytearray(int(digits[k:k + 2], 16) for k in range(0, 2 * nbytes, 2))[::-1]
    if value < 0:
        out[-1] |= 0x80
    return bytes(out)


def encode(at, groups, to_end=False):
    y, mo, d, h, mi = at
    body = b"".join(bcd(v, 1, False) for v in (mi, h, d, mo, y % 100))
    for name, fields in LAYOUT:
        if name in groups:
            for field, width, signed, count in fields:
                vals = groups[name][field]
                for v in (vals if count > 1 else [vals]):
                    body += bcd(v, width, signed)
        body += b"\xaa"
    head = b"\xa0\xa0" + bytes([len(body) + (2 if to_end else 0)])
    rec = head + body
    return rec + bytes([sum(rec) & 0xFF, 0xE5])


def _value(draw, width, signed):
    top = 8 * 10 ** (2 * width - 1) - 1 if signed else 10 ** (2 * width) - 1
    return draw(st.integers(-top if signed else 0, top))


@st.composite
def records(draw):
    t = draw(st.integers(calendar.timegm((2000, 1, 1, 0, 0, 0)), calendar.timegm((2099, 12, 31, 23, 59, 0))))
    at = tuple(time.gmtime(t)[:5])
    groups = {}
    for name, fields in LAYOUT:
        if draw(st.booleans()):
            g = {}
            for field, width, signed, count in fields:
                vals = [_value(draw, width, signed) for _ in range(count)]
                g[field] = vals if count > 1 else vals[0]
            groups[name] = g
    return at, groups, draw(st.booleans())


@settings(max_examples=400, deadline=None)
@given(records())
def test_records_round_trip(rec):
    at, groups, to_end = rec
    got = fz.decode_profile(encode(at, groups, to_end))
    want = {"at": at}
    for g in groups.values():
        want.update(g)
    assert got == want


def test_requests_and_dis():
    assert fz.profile_di(0, fz.PROFILE_LATEST) == 0x06000002 and fz.profile_di(3, fz.PROFILE_AT) == 0x06030001
    assert fz.profile_request(1) == b"\x01" and fz.profile_request(12, (2026, 11, 27, 13, 15)) == \
        bytes([0x12, 0x15, 0x13, 0x27, 0x11, 0x26])
    for bad in ((7, 0), (0, 3), (-1, 1)):
        try:
            fz.profile_di(*bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_profile_mutation_fuzz_100k():
    rng = random.Random(6453)
    full = {name: {f: ([1] * c if c > 1 else 1) for f, _w, _s, c in fields} for name, fields in LAYOUT}
    seeds = [encode((2026, 11, 27, 13, 15), full), encode((2026, 11, 27, 13, 30), {"vif": full["vif"]}, True),
             encode((2026, 11, 27, 13, 45), {})]
    decoded = 0
    for _ in range(100_000):
        buf = point_mutate(rng, rng.choice(seeds))
        try:
            fz.decode_profile(buf)
            decoded += 1
        except ValueError:
            pass
    print("load profile fuzz: 100000 inputs, %d decoded" % decoded)
    assert decoded < 100_000
