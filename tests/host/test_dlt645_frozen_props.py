"""dlt645_frozen properties: what the simulated meter's independent encoder writes (stamps, energies, counts,
event records, status words) the firmware's decoders read back exactly; any bytes give a value or ValueError."""

import calendar
import random

from hypothesis import given, settings
from hypothesis import strategies as st

import dlt645_frozen as fz
from fuzzkit import point_mutate
from tools.sim import meter_history as sim
from tools.sim.dlt645_wire import bcd

FUZZ_TOTAL = 100_000
# naive local seconds 2000-01-01 .. 2099-12-31
stamps = st.integers(calendar.timegm((2000, 1, 1, 0, 0, 0)), calendar.timegm((2099, 12, 30, 0, 0, 0)))
hundredths = st.integers(0, 99999999)


@settings(max_examples=500, deadline=None)
@given(stamps)
def test_stamps_round_trip(t):
    tm = fz.decode_stamp(sim.stamp(t), 0, 6)
    assert calendar.timegm(tm + (0, 0, 0)) == t
    assert fz.stamp_text(tm) == sim.stamp_text(t)
    five = fz.decode_freeze_time(sim.stamp(t, False))
    assert fz.stamp_text(five) == sim.stamp_text(t, False)


@settings(max_examples=300, deadline=None)
@given(st.lists(hundredths, min_size=1, max_size=12))
def test_energies_round_trip(vals):
    assert fz.decode_energies(sim.energies(vals)) == vals


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 999999))
def test_counts_round_trip(n):
    assert fz.decode_count(bcd(n, 3)) == n


@settings(max_examples=300, deadline=None)
@given(stamps, st.integers(0, 7200), st.integers(0, 99990000), hundredths, st.integers(0, 5000))
def test_sim_event_records_decode(t, dur, fwd, rev, grown):
    h = sim.MeterHistory()
    h.mains_off(t)
    h.mains_on(t + dur, [fwd] + [0] * 4, [rev])
    h.cover(True, t, [fwd], [rev])
    h.cover(False, t + dur, [fwd + grown], [rev])
    h.clock_set(t, t + dur, operator=12345678)
    for kind in ("power_down", "meter_cover", "clock_set"):
        assert h.read(fz.event_count_di(kind), None)[1] == bcd(1, 3)
    pd = fz.decode_event("power_down", h.read(fz.event_record_di("power_down", 1), None)[1])
    assert calendar.timegm(pd["start"] + (0, 0, 0)) == t and calendar.timegm(pd["end"] + (0, 0, 0)) == t + dur
    cv = fz.decode_event("meter_cover", h.read(fz.event_record_di("meter_cover", 1), None)[1])
    assert cv["before"] == [fwd, rev] and cv["after"] == [fwd + grown, rev]
    cs = fz.decode_event("clock_set", h.read(fz.event_record_di("clock_set", 1), None)[1])
    assert cs["operator"] == "12345678" and calendar.timegm(cs["after"] + (0, 0, 0)) == t + dur
    # records never written read as zeros: decoded as empty
    assert fz.decode_event("power_down", h.read(fz.event_record_di("power_down", 2), None)[1]) is None


def test_sim_status_words_decode():
    h = sim.MeterHistory()
    h.mains_off(1e9)
    h.cover(True, 1e9, [0], [0])
    st_ = fz.decode_status(h.read(fz.STATUS_BLOCK, None)[1])
    assert st_["power_down"] and st_["cover_open"] and not st_["relay_open"]


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(fz.KINDS), st.binary(max_size=120))
def test_event_any_bytes(kind, raw):
    try:
        fz.decode_event(kind, raw)
    except ValueError:
        pass


def test_decoders_mutation_fuzz_100k():
    """100,000 seeded mutations of valid values through every decoder: only values or ValueError come out."""
    rng = random.Random(6452)
    t = calendar.timegm((2026, 11, 27, 13, 5, 9, 0, 0, 0))
    seeds = [("stamp", sim.stamp(t)), ("freeze", sim.stamp(t, False)), ("energies", sim.energies([1, 2, 3, 4, 5])),
             ("count", bcd(42, 3)), ("status", bytes(14))]
    for kind in fz.KINDS:
        seeds.append((kind, sim.stamp(t) + sim.stamp(t + 60) + bytes(fz.event_spec(kind)[3][0] - 12)))
    decoded = 0
    for _ in range(FUZZ_TOTAL):
        what, raw = rng.choice(seeds)
        buf = point_mutate(rng, raw)
        try:
            if what == "stamp":
                fz.decode_stamp(buf, 0, 6)
            elif what == "freeze":
                fz.decode_freeze_time(buf)
            elif what == "energies":
                fz.decode_energies(buf)
            elif what == "count":
                fz.decode_count(buf)
            elif what == "status":
                fz.decode_status(buf)
            else:
                fz.decode_event(what, buf)
            decoded += 1
        except ValueError:
            pass
    print("frozen/event decoder fuzz: %d inputs, %d decoded" % (FUZZ_TOTAL, decoded))
    assert 0 < decoded < FUZZ_TOTAL
