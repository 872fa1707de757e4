"""lib/dlt645_master under the unix port against tools/sim/meter: reads, every fault, two meters, follow-up,
discovery, broadcast time sync, RS-485 driver-enable timing, 1997 reads, writes, baud probing."""

import json
import re
import os
import tempfile
import time

import pytest

from harness import ROOT, run_micropython
from tools.sim.meter import MeterBus, MeterSpec

pytestmark = pytest.mark.port

SCRIPT = ROOT / "tests/port/mp/dlt645_master_ops.py"
A = "000072007201"
B = "000072007202"
FAST = {"baud": 9600, "timeout_ms": 300}  # master options for quick runs against a 9600-baud bus


def start_bus(*specs, baud=9600, latency_ms=(0, 5), control=False, **kw):
    bus = MeterBus(list(specs) or [A], baud=baud, seed=7, latency_ms=latency_ms, **kw)
    bus.start(control_port=0 if control else None)
    return bus


@pytest.fixture
def buses():
    made = []
    yield made
    for b in made:
        b.stop()


def run(bus, ops, master=None, de=False, timeout=60):
    """Run the ops under MicroPython against `bus`; return (op results, final stats line)."""
    plan = {"master": dict(FAST if master is None else master), "de": de, "ops": ops}
    # The plan goes through a file: this unix port build aborts on argv strings of 256 characters or more.
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="dlt645-plan-", delete=False) as f:
        json.dump(plan, f)
    try:
        rc, out = run_micropython(SCRIPT, bus.port, f.name, timeout=timeout)
    finally:
        os.unlink(f.name)
    assert rc == 0, out
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert len(lines) == len(ops) + 1, out
    return lines[:-1], lines[-1]


def served(bus, address, di):
    return [s["value"] for s in bus.served if s["address"] == address and s["di"] == di]


ENERGY = ("00010000", "00010100", "00010200", "00010300", "00010400", "00020000", "00000000")
INSTANT = ("02010100", "02010200", "02010300", "02020100", "02020200", "02020300",
           "02030000", "02030100", "02030200", "02030300", "02060000", "02800002")
INFO = ("04000101", "04000102", "04000401", "04000402")


def test_reads_match_what_the_meter_served(buses):
    bus = start_bus()
    buses.append(bus)
    dis = ENERGY + INSTANT + INFO + ("0001FF00",)
    res, final = run(bus, [["read", A, di] for di in dis])
    got = {di: r["ok"] for di, r in zip(dis, res)}
    for di in dis:
        assert [got[di]] == served(bus, A, di), di  # exactly what the meter put on the wire
    # and it is the meter's register content: energy only grows, the rest is consistent
    regs = bus.meter(A).registers()
    assert 0 <= regs[0x00010000] - got["00010000"] < 0.05
    assert got["04000401"] == A and got["04000402"] == A
    block = got["0001FF00"]
    assert len(block) == 5 and abs(block[0] - sum(block[1:])) < 1e-6
    assert abs(got["00000000"] - (got["00010000"] - got["00020000"])) < 0.05
    assert final["stats"]["requests"] == final["stats"]["replies"] == len(dis)
    assert final["stats"]["retries"] == 0 and final["stats"]["corrupt"] == 0


@pytest.mark.parametrize("fault, times, outcome", [
    ("silence", None, "NoReply"),
    ("bad_cs", None, "Corrupt"),
    ("bad_cs", 1, "value"),
    ("noise", None, "value"),
    ("abnormal", None, "MeterError"),
    ("split", None, "value"),
    ("followup", None, "value"),
    ("drop_client", None, "value"),
    ("echo", None, "value"),
])
def test_fault_survived(buses, fault, times, outcome):
    bus = start_bus()
    buses.append(bus)
    bus.set_fault(fault, times=times)
    ops = [["read", A, "00010000"], ["read", A, "02020100"], ["read", A, "0001FF00"]]
    res, final = run(bus, ops)
    st = final["stats"]
    if outcome == "value":
        for op, r in zip(ops, res):
            assert "ok" in r, r
            assert [r["ok"]] == served(bus, A, op[2])
    else:
        assert [r.get("error") for r in res] == [outcome] * 3
    attempts = len(ops) * 3  # retries=2
    if fault == "silence":
        assert st["timeouts"] == attempts and st["retries"] == 2 * len(ops) and st["replies"] == 0
    elif fault == "bad_cs" and times is None:
        assert st["corrupt"] == attempts and st["retries"] == 2 * len(ops)
    elif fault == "bad_cs":
        assert st["corrupt"] == 1 and st["retries"] == 1
    elif fault == "noise":
        assert st["stray_bytes"] > 0 and st["replies"] >= len(ops)
    elif fault == "abnormal":
        assert res[0]["reasons"] == ["other"]
        assert st["abnormal"] == len(ops) and st["retries"] == 0  # an answer is not retried
    elif fault == "split":
        assert st["retries"] == 0
    elif fault == "followup":
        assert st["requests"] > len(ops) and st["retries"] == 0  # B1 -> 12 -> ... -> 92
    elif fault == "echo":
        assert st["retries"] == 0 and st["stray_bytes"] == 0  # our own request heard back is skipped
    elif fault == "drop_client":
        assert st["retries"] >= 1 and final["uart"]["drops"] == 1 and final["uart"]["connects"] == 2
        assert bus.stats["drops"] == 1


def test_per_meter_fault_leaves_the_other_meter_alone(buses):
    bus = start_bus(MeterSpec(A, start_kwh=100.0), MeterSpec(B, start_kwh=200.0))
    buses.append(bus)
    bus.set_fault("silence", address=B)
    res, final = run(bus, [["read", A, "00010000"], ["read", B, "00010000"]])
    assert 100 <= res[0]["ok"] < 101 and res[1]["error"] == "NoReply"


def test_two_meters_one_bus_no_crosstalk(buses):
    bus = start_bus(MeterSpec(A, start_kwh=100.0), MeterSpec(B, start_kwh=5000.0))
    buses.append(bus)
    ops = []
    for _ in range(3):
        for addr in (A, B):
            ops += [["read", addr, "04000401"], ["read", addr, "00010000"]]
    ops += [["discover"], ["discover", [A, B, "000072007299"]], ["read_address"]]
    res, final = run(bus, ops)
    for op, r in zip(ops[:12], res[:12]):
        if op[2] == "04000401":
            assert r["ok"] == op[1]  # the meter that answered is the one asked
        else:
            assert r["ok"] in served(bus, op[1], "00010000")
            assert (r["ok"] < 200) == (op[1] == A)
    assert res[12]["ok"] == []  # AA..AA with two meters: nobody may answer
    assert res[13]["ok"] == [A, B]
    assert res[14]["error"] == "NoReply"
    assert bus.stats["collisions"] >= 1


def test_followup_frames_assembled(buses):
    bus = start_bus(MeterSpec(A, max_frame_data=9))  # DI + SEQ leave 4 value bytes per frame
    buses.append(bus)
    res, final = run(bus, [["read", A, "0001FF00"], ["read_raw", A, "04000401"], ["read", A, "00010000"]])
    block = res[0]["ok"]
    assert [block] == served(bus, A, "0001FF00") and len(block) == 5
    assert res[1]["ok"] == "017200720000"
    # 20 bytes in 4-byte parts: 91/B1 + 4 follow-ups; 6 bytes: 2 frames; 4 bytes: 1 frame
    assert final["stats"]["requests"] == 5 + 2 + 1 and final["stats"]["retries"] == 0


def test_discovery_of_the_single_meter(buses):
    bus = start_bus()
    buses.append(bus)
    res, _ = run(bus, [["read_address"], ["discover"], ["discover", [A, B]], ["read", "AAAAAAAAAAAA", "00010000"],
                       ["read", "AAAAAA007201", "04000401"]])
    assert res[0]["ok"] == A and res[1]["ok"] == [A] and res[2]["ok"] == [A]
    assert res[3]["ok"] in served(bus, A, "00010000")
    assert res[4]["ok"] == A


def test_broadcast_time_sync_sets_clocks_and_gets_no_reply(buses):
    # meters that take any broadcast (real ones refuse a jump this large: see tests/host/test_meter_history.py)
    bus = start_bus(MeterSpec(A, clock_offset_s=-3600, strict_sync=False),
                    MeterSpec(B, clock_offset_s=500, strict_sync=False))
    buses.append(bus)
    tm = [2030, 1, 2, 3, 4, 5]
    res, final = run(bus, [["broadcast_time", tm], ["quiet", 300], ["read", A, "04000101"],
                           ["read", A, "04000102"], ["read", B, "04000102"]])
    assert res[0]["ok"] is True and res[1]["ok"] == 0
    assert res[2]["ok"] == "2030-01-02"
    for r in res[3:]:
        hh, mm, ss = (int(x) for x in r["ok"].split(":"))
        assert (hh, mm) == (3, 4) and 5 <= ss <= 15
    assert bus.stats["broadcasts"] == 1 and bus.stats["replies"] == 3
    assert final["stats"]["requests"] == 4 and final["stats"]["replies"] == 3
    for addr in (A, B):
        assert bus.meter(addr).clock_tuple()[:4] == (2030, 1, 2, 3)


def test_driver_enable_held_for_the_wire_time(buses):
    bus = start_bus(baud=2400, latency_ms=(0, 0))
    buses.append(bus)
    res, final = run(bus, [["read", A, "00010000"], ["read_address"], ["broadcast_time", [2030, 1, 2, 3, 4, 5]]],
                     master={"baud": 2400, "timeout_ms": 500}, de=True)
    assert all("ok" in r for r in res)
    # request + 4 FE at 2400 baud 8E1: 20 bytes read, 16 read address, 22 time sync
    spans = final["de"]
    assert len(spans) == 3
    for (on, off), nbytes in zip(spans, (20, 16, 22)):
        assert off - on >= nbytes * 11 * 1000 // 2400, (on, off, nbytes)


def test_1997_reads(buses):
    bus = start_bus()
    buses.append(bus)
    res, _ = run(bus, [["read_1997", A, "9010"], ["read_1997", A, "B611"], ["read_1997", A, "C032"],
                       ["read_1997", A, "C011"], ["read_1997", A, "1234"]])
    assert [res[0]["ok"]] == served(bus, A, "9010")
    assert [res[1]["ok"]] == served(bus, A, "B611")
    assert res[2]["ok"] == A
    assert len(res[3]["ok"]) == 8
    assert res[4]["error"] == "MeterError" and res[4]["reasons"] == ["no such data"]


def test_write_with_password(buses):
    bus = start_bus()
    buses.append(bus)
    res, final = run(bus, [["write", A, "04000102", "01:02:03", "000000"], ["read", A, "04000102"],
                           ["write", A, "04000102", "01:02:03", "123456"]])
    assert res[0]["ok"] is True and res[1]["ok"].startswith("01:02:0")
    assert res[2]["error"] == "MeterError" and res[2]["reasons"] == ["password/unauthorised"]


def test_unknown_di_is_reported_not_retried(buses):
    bus = start_bus()
    buses.append(bus)
    res, final = run(bus, [["read_raw", A, "02800003"]])
    assert res[0]["error"] == "MeterError" and res[0]["reasons"] == ["no such data"]
    assert final["stats"]["retries"] == 0 and final["stats"]["abnormal"] == 1


def test_probe_baud(buses):
    bus = start_bus(control=True)
    buses.append(bus)
    t0 = time.monotonic()
    res, final = run(bus, [["probe_baud", bus.control_port, 4800], ["read", A, "00010000"]],
                     master={"baud": 2400, "timeout_ms": 200})
    assert res[0]["ok"] == [4800, [2400, 1200, 4800]]
    assert "ok" in res[1] and final["stats"]["timeouts"] == 2
    assert time.monotonic() - t0 < 30


# -- firmware/metering with the master: a meter's capabilities learned once -------------------------
CAPS_SCRIPT = ROOT / "tests/port/mp/metering_caps.py"
PHASE_BC = ("02010200", "02010300", "02020200", "02020300")


def run_metering(bus, steps, state_dir, inst=("v", "i", "p", "pf", "f"), timeout=120):
    plan = {"state_dir": str(state_dir), "meter": A, "master": FAST, "inst": list(inst), "steps": steps}
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="metering-plan-", delete=False) as f:
        json.dump(plan, f)
    try:
        rc, out = run_micropython(CAPS_SCRIPT, bus.port, bus.control_port, f.name, timeout=timeout)
    finally:
        os.unlink(f.name)
    assert rc == 0, out
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert lines and lines[-1].get("done") == len(lines) - 1, out
    return lines[:-1]


def err_counters(poll):
    # what the heartbeat reports from the meter side; the full form is sent whenever this changes
    s = poll["stats"]
    return {k: v for k, v in (("meter_timeouts", s["timeouts"]), ("meter_corrupt", s["corrupt"]),
                              ("meter_abnormal", s["abnormal"]), ("meter_failed_reads", poll["failed"])) if v}


def test_single_phase_meter_polled_for_an_hour_and_a_day(buses, tmp_path):
    # regression: a single-phase meter was asked for phases B and C every poll; each refusal counted in
    # meter_abnormal, so every heartbeat went out in the full form. A block-refusing meter: the same for 0001FF00.
    bus = start_bus(MeterSpec(A, phases=1, block=False), control=True)
    buses.append(bus)
    state = tmp_path / "state"
    state.mkdir()
    polls = run_metering(bus, [["poll", 5, 900]], state)  # first contact, then an hour at 900 s
    first, hour = polls[0], polls[1:]
    assert all(p["ok"] for p in polls)
    assert first["stats"]["abnormal"] == 3 and first["phases"] == 1  # block, V phase B, I phase B: once
    assert {tuple(sorted(err_counters(p).items())) for p in hour} == {(("meter_abnormal", 3),)}  # flat: short beats
    for p in hour:
        assert not set(p["asked"]) & set(PHASE_BC + ("0001FF00",)), p["asked"]
        assert p["stats"]["refused"] == 0
    inst = json.loads(hour[-1]["inst"])
    assert len(inst["v"]) == 1 and len(inst["i"]) == 1 and set(inst) == {"v", "i", "p", "pf", "f"}
    assert hour[-1]["inst"].count('"v":[') == 1 and re.search(r"\d\.\d{5,}", hour[-1]["inst"]) is None
    caps = json.loads((state / "meter_caps.json").read_text())
    assert caps[A]["phases"] == 1 and caps[A]["refused"] == ["0001FF00", "02010200", "02020200"]
    refusals_sent = bus.stats["abnormal"]
    assert refusals_sent == 3

    # a reset: the capabilities come from flash, nothing refused is asked; then a day later a probe that
    # finds the same refusals (known: not errors); then the meter drops out and comes back: probed again
    steps = [["restart"], ["poll", 3, 900], ["poll", 1, 86400], ["poll", 2, 900],
             ["fault", {"fault": "silence", "on": True, "address": A}], ["poll", 3, 900],
             ["fault", {"fault": "silence", "on": False, "address": A}], ["poll", 3, 900]]
    polls = run_metering(bus, steps, state)
    boot = polls[:3]
    for p in boot:
        assert p["ok"] and not set(p["asked"]) & set(PHASE_BC + ("0001FF00",)) and err_counters(p) == {}
    assert bus.stats["abnormal"] == refusals_sent + 6  # refusals sent since: the daily and meter_online probes
    daily = polls[4]  # the first poll a day after the first contact's probe
    assert {"0001FF00", "02010200", "02020200"} <= set(daily["asked"])
    assert daily["stats"]["refused"] == 3 and daily["stats"]["abnormal"] == 0
    assert not set(polls[3]["asked"] + polls[5]["asked"]) & set(PHASE_BC)
    offline, back, probe, after = polls[6:9], polls[9], polls[10], polls[11]
    assert [p["ok"] for p in offline] == [False] * 3 and offline[-1]["events"] == ["meter_offline"]
    assert back["ok"] and back["events"] == ["meter_online"]
    assert "02010200" in probe["asked"] and probe["stats"]["refused"] == 6
    assert "02010200" not in after["asked"]
    for p in polls[3:]:
        assert p["stats"]["abnormal"] == 0  # known refusals never counted
