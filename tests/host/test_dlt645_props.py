"""dlt645 properties: round trips for every DI with random addresses and values, cross-checked with the
simulator's independent codec; decoding arbitrary bytes only ever yields a Frame or a DLT645Error."""

import datetime
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dlt645
import dlt645_values
from tools.sim import meter as sim

FUZZ_TOTAL = 100_000
_counted = {"decode": 0}

addresses = st.text(alphabet="0123456789", min_size=12, max_size=12)
patterns = st.text(alphabet="0123456789A", min_size=12, max_size=12)


def _number(row):
    _, kind, nbytes, decimals, signed, _ = row
    top = (8 * 10 ** (2 * nbytes - 1) if signed else 10 ** (2 * nbytes)) - 1
    ints = st.integers(-top if signed else 0, top)
    return ints.map(lambda n: n / 10 ** decimals if decimals else n)


def values_for(di):
    row = dlt645.fmt(di)
    kind = row[1]
    if kind == dlt645_values.NUMBER:
        return _number(row)
    if kind == dlt645_values.BLOCK:
        return st.lists(_number(row), min_size=1, max_size=12)
    if kind == dlt645_values.DATE:
        return st.dates(datetime.date(2000, 1, 1), datetime.date(2099, 12, 31)).map(lambda d: d.isoformat())
    if kind == dlt645_values.TIME:
        return st.times().map(lambda t: t.strftime("%H:%M:%S"))
    return st.text(alphabet="0123456789", min_size=12, max_size=12)


di_and_value = st.sampled_from(dlt645.table()).flatmap(lambda di: st.tuples(st.just(di), values_for(di)))


@settings(max_examples=1500, deadline=None)
@given(di_and_value, addresses, st.integers(0, 4))
def test_reply_round_trip_every_di(dv, address, fe):
    di, v = dv
    raw = dlt645.encode_value(di, v)
    assert raw == sim.encode_value(di, v)  # two independent encoders agree
    is_1997 = dlt645_values.is_1997(di)
    di_len = 2 if is_1997 else 4
    control = 0x81 if is_1997 else 0x91
    frame = dlt645.encode(address, control, dlt645.di_bytes(di, di_len) + raw)
    assert frame == sim.make_frame(address, control, dlt645.di_bytes(di, di_len) + raw)
    f = dlt645.decode(b"\xfe" * fe + frame)
    assert (f.address, f.control, f.end) == (address, control, fe + len(frame))
    got_di, got_raw = dlt645.split_reply(f, di_len)
    assert (got_di, got_raw) == (di, raw)
    assert dlt645.value(di, got_raw) == v


@settings(max_examples=500, deadline=None)
@given(patterns, st.integers(0, 0xFFFFFFFF), st.integers(1, 255))
def test_requests_round_trip(pattern, di, seq):
    f = dlt645.decode(dlt645.read_request(pattern, di))
    assert f.address == pattern and f.control == 0x11 and dlt645.split_reply(f) == (di, b"")
    f = dlt645.decode(dlt645.read_next_request(pattern, di, seq))
    assert f.control == 0x12 and f.data[-1] == seq and dlt645.split_reply(f)[0] == di


@settings(max_examples=300, deadline=None)
@given(st.tuples(st.integers(2000, 2099), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23),
                 st.integers(0, 59), st.integers(0, 59)))
def test_time_sync_fields(tm):
    f = dlt645.decode(dlt645.time_sync_request(tm))
    fields = [int("%02X" % b) for b in f.data]
    assert fields == [tm[5], tm[4], tm[3], tm[2], tm[1], tm[0] % 100]


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=24).filter(lambda b: 0x68 not in b), st.binary(max_size=200), addresses,
       st.integers(0, 255), st.binary(max_size=8))
def test_noise_before_and_after_is_skipped(noise, data, address, control, tail):
    frame = dlt645.encode(address, control, (data + b"\x00")[:1] if control & 0xC0 == 0xC0 else data)
    f = dlt645.decode(noise + frame + tail)
    assert f.start == len(noise) and f.end == len(noise) + len(frame) and f.address == address


def _decode_total(buf):
    _counted["decode"] += 1
    try:
        f = dlt645.decode(buf)
    except dlt645.DLT645Error:
        return None
    assert isinstance(f, dlt645.Frame)
    assert 0 <= f.start < f.end <= len(buf) and buf[f.start] == 0x68 and buf[f.end - 1] == 0x16
    return f


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_decode_any_bytes_hypothesis(buf):
    _decode_total(buf)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(dlt645.table()), st.binary(max_size=24))
def test_value_any_bytes(di, raw):
    try:
        dlt645.value(di, raw)
    except dlt645.DLT645Error:
        pass


def test_decode_mutation_fuzz_counts_100k():
    """100,000 seeded mutations of valid frames and random buffers: only Frames or DLT645Errors come out."""
    rng = random.Random(645)
    seeds = [dlt645.encode("000072007201", 0x91, dlt645.di_bytes(0x00010000) + bytes(4)),
             dlt645.encode("123456789012", 0xD1, b"\x02"),
             dlt645.encode("AAAAAAAAAAAA", 0x13),
             dlt645.encode("000072007201", 0xB1, dlt645.di_bytes(0x0001FF00) + bytes(20)),
             dlt645.time_sync_request((2025, 6, 1, 12, 0, 0))]
    frames = 0
    before = _counted["decode"]
    for _ in range(FUZZ_TOTAL):
        kind = rng.random()
        if kind < 0.15:
            buf = bytes(rng.getrandbits(8) for _ in range(rng.randrange(40)))
        else:
            buf = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                op = rng.random()
                pos = rng.randrange(len(buf) + 1)
                if op < 0.4 and buf:
                    buf[min(pos, len(buf) - 1)] = rng.getrandbits(8)
                elif op < 0.6:
                    buf[pos:pos] = bytes([rng.choice((0x68, 0x16, 0xFE, rng.getrandbits(8)))])
                elif op < 0.8 and buf:
                    del buf[pos:pos + rng.randint(1, 4)]
                else:
                    buf = buf[:pos]
            if rng.random() < 0.3:
                buf = b"\xfe" * rng.randrange(5) + bytes(buf) + bytes(rng.getrandbits(8) for _ in range(3))
        if _decode_total(bytes(buf)) is not None:
            frames += 1
    done = _counted["decode"] - before
    print("decode fuzz: %d mutated/random inputs (%d decoded as frames), %d in this session with hypothesis"
          % (done, frames, _counted["decode"]))
    assert done == FUZZ_TOTAL
    assert 0 < frames < FUZZ_TOTAL
