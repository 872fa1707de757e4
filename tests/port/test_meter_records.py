"""The meters' own records under the unix port against the meter simulator: daily freezes caught up after 3 and
70 days (oldest first, only the meter's depth, none lost across a power cut), meter events with a baseline,
clock discipline (sync once and verify, fault beyond the window, nothing in the guard), plausibility."""

import calendar
import json
import os
import tempfile
import time

import pytest

from harness import ROOT, run_micropython
from tools.sim.meter import MeterBus, MeterSpec

pytestmark = pytest.mark.port

SCRIPT = ROOT / "tests/port/mp/meter_records.py"
A = "000072007201"
FAST = {"baud": 9600, "timeout_ms": 300}


@pytest.fixture
def rig(tmp_path):
    made = []

    def make(**spec):
        bus = MeterBus([MeterSpec(A, start_kwh=1000.0, base_kw=1.5, noise_kw=0.05, **spec)], baud=9600, seed=5,
                       latency_ms=(0, 3))
        bus.start(control_port=0)
        made.append(bus)
        return bus

    make.dir = tmp_path
    yield make
    for b in made:
        b.stop()


def run(bus, d, steps, cfg=None, clock_offset_s=0.0, timeout=120):
    """Run the steps under MicroPython; return (step lines, records stored so far)."""
    plan = {"state_dir": str(d / "state"), "records": str(d / "records.jsonl"), "meter": A, "master": FAST,
            "cfg": cfg or {}, "clock_offset_s": clock_offset_s, "steps": steps}
    (d / "state").mkdir(exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="records-plan-", delete=False) as f:
        json.dump(plan, f)
    try:
        rc, out = run_micropython(SCRIPT, bus.port, bus.control_port, f.name, timeout=timeout)
    finally:
        os.unlink(f.name)
    assert rc == 0, out[-3000:]
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert lines[-1] == {"done": len(steps)}, out[-3000:]
    return lines[:-1], records(d)


def records(d, kind=None):
    p = d / "records.jsonl"
    if not p.exists():
        return []
    out = [json.loads(x) for x in p.read_text().splitlines()]
    return [r for r in out if kind is None or r["kind"] == kind]


def start_day(bus, y=2026, mo=11, d=1, h=12):
    bus.meter(A).set_clock((y, mo, d, h, 0, 0))


def check_frozen(bus, d, expect_dates, earlier=()):
    """The frozen records: each equal to the simulator's freeze, first sent oldest first, all of expect_dates."""
    recs = [r["body"] for r in records(d, "frozen")]
    sim = {f["date"]: f for f in list(earlier) + bus.meter(A).freezes()}
    first = []
    seen = {}
    for r in recs:
        f = sim[r["date"]]
        assert r["fwd"] == f["fwd"] and r["rev"] == f["rev"] and r["at"] == f["at"], r
        assert r["meter"] == A
        if r["date"] in seen:
            assert seen[r["date"]] == r["fwd"]  # a re-send after a cut is the same record
        else:
            seen[r["date"]] = r["fwd"]
            first.append(r["date"])
    assert first == sorted(first) and first == expect_dates
    return recs


def test_catch_up_after_3_days_down(rig):
    bus = rig()
    start_day(bus)
    bus.meter(A).advance(4 * 86400)
    run(bus, rig.dir, [["frozen"]])
    bus.command({"advance_s": 3 * 86400})  # the terminal is off for three days
    lines, _ = run(bus, rig.dir, [["frozen"], ["frozen"]])
    assert lines[0]["stored"] == 3 and lines[1]["stored"] == 3  # (a running count) nothing new the second time
    dates = [f["date"] for f in bus.meter(A).freezes()]
    assert len(dates) == 7
    recs = check_frozen(bus, rig.dir, dates)
    assert len(recs) == 7  # none twice
    print("frozen bus time: %d ms for 3 days" % lines[0]["bus_ms"])


def test_catch_up_after_70_days_down_with_a_power_cut_in_the_middle(rig):
    bus = rig()
    start_day(bus)
    bus.meter(A).advance(2 * 86400)
    run(bus, rig.dir, [["frozen"]])
    assert len(records(rig.dir, "frozen")) == 2
    earlier = bus.meter(A).freezes()
    bus.command({"advance_s": 70 * 86400})
    lines, _ = run(bus, rig.dir, [["cut_at", 25], ["frozen"], ["restart"], ["frozen"], ["frozen"]])
    assert lines[1].get("cut") is True
    assert lines[4]["stored"] == lines[3]["stored"]
    freezes = [f["date"] for f in bus.meter(A).freezes()]
    assert len(freezes) == 62  # the meter's depth: the eight oldest days of the outage are gone from the meter
    recs = check_frozen(bus, rig.dir, ["2026-11-02", "2026-11-03"] + freezes, earlier)
    assert len(recs) == 2 + 62 + 1  # the record at the cut reached flash before its progress: sent twice


def test_a_freeze_the_outbox_could_not_write_is_read_again(rig):
    bus = rig()
    start_day(bus)
    bus.meter(A).advance(5 * 86400)
    lines, _ = run(bus, rig.dir, [["refuse_at", 3], ["frozen"], ["frozen"]])
    assert lines[1]["stored"] == 2 and lines[2]["stored"] == 5  # stopped at the third, resumed there
    check_frozen(bus, rig.dir, [f["date"] for f in bus.meter(A).freezes()])


def test_frozen_days_max_limits_catch_up(rig):
    bus = rig()
    start_day(bus)
    bus.meter(A).advance(20 * 86400)
    lines, _ = run(bus, rig.dir, [["frozen"]], cfg={"frozen_days_max": 5})
    freezes = [f["date"] for f in bus.meter(A).freezes()]
    check_frozen(bus, rig.dir, freezes[-5:])


def test_a_freeze_during_catch_up_is_neither_lost_nor_doubled(rig):
    bus = rig()
    start_day(bus, h=23)
    bus.meter(A).advance(10 * 86400)
    bus.command({"advance_s": 3300})
    # 40 minutes of meter time a second from just before the walk (set in the same run, so a slow start of the
    # process on a loaded machine cannot let midnight pass before the walk begins): the meter freezes again while
    # 10 days are read
    lines, _ = run(bus, rig.dir, [["control", {"time_scale": 2400}], ["frozen"], ["control", {"time_scale": 1}],
                                  ["frozen"]])
    assert lines[1]["rewalks"] >= 1  # it did freeze under the walk
    freezes = [f["date"] for f in bus.meter(A).freezes()]
    assert len(freezes) >= 11
    check_frozen(bus, rig.dir, freezes)


def test_power_down_and_cover_open_arrive_as_meter_events(rig):
    bus = rig()
    lines, recs = run(bus, rig.dir, [["events"], ["events"],
                                     ["control", {"mains": False}], ["control", {"advance_s": 600}],
                                     ["control", {"mains": True}],
                                     ["control", {"cover": True}], ["events"],
                                     ["control", {"advance_s": 120}], ["control", {"cover": False}], ["events"],
                                     ["events"]])
    ev = [r["body"] for r in records(rig.dir, "meter_event")]
    assert ev[0]["kind"] == "baseline" and ev[0]["counts"]["power_down"] == 0
    assert lines[1]["sent"] == 0
    pd = [e for e in ev if e["kind"] == "power_down"]
    assert len(pd) == 1 and pd[0]["n"] == 1 and pd[0]["start"] and pd[0]["end"]
    down = calendar.timegm(time.strptime(pd[0]["end"], "%Y-%m-%dT%H:%M:%S")) - \
        calendar.timegm(time.strptime(pd[0]["start"], "%Y-%m-%dT%H:%M:%S"))
    assert 590 <= down <= 620
    cover = [e for e in ev if e["kind"] == "meter_cover"]
    assert len(cover) == 2 and cover[0]["n"] == cover[1]["n"] == 1
    assert cover[0]["end"] is None and cover[1]["end"] is not None  # sent open, then again with its end
    assert cover[1]["kwh_before"][0] <= cover[1]["kwh_after"][0]
    assert lines[-1]["sent"] == 0


def test_a_meter_seen_first_with_history_gets_a_baseline_not_alarms(rig):
    bus = rig()
    for _ in range(3):
        bus.command({"cover": True})
        bus.command({"cover": False})
    lines, _ = run(bus, rig.dir, [["events"]])
    ev = [r["body"] for r in records(rig.dir, "meter_event")]
    assert [e["kind"] for e in ev] == ["baseline"] and ev[0]["counts"]["meter_cover"] == 3


def noon_offset(bus, hh=12, mm=0):
    """Move the simulation's true time to hh:mm local; the trusted clock offset for the terminal."""
    m = bus.meter(A)
    local = m.true_utc() + m.utc_offset_s
    target = (local // 86400 + 1) * 86400 + hh * 3600 + mm * 60
    bus.command({"advance_s": target - local})
    return m.true_utc() - time.time()


def meter_dev(bus):
    m = bus.meter(A)
    return m.clock() - (m.true_utc() + m.utc_offset_s)


def test_clock_40_s_off_is_synced_once_and_verified(rig):
    bus = rig(clock_offset_s=40)
    off = noon_offset(bus)
    lines, _ = run(bus, rig.dir, [["clock"], ["clock"]], clock_offset_s=off)
    assert lines[0]["result"] == "done" and lines[0]["syncs"] == 1
    assert abs(meter_dev(bus)) < 2
    ev = [r["body"]["data"] for r in records(rig.dir, "event") if r["body"]["kind"] == "meter_clock"]
    assert ev[0]["synced"] and ev[0]["ok"] and 38 <= ev[0]["dev_s"] <= 42 and abs(ev[0]["after_s"]) <= 2
    assert lines[1]["syncs"] == 1  # once a day
    # the meter drifts off again the same day: reported, not synced again
    bus.meter(A).clock_offset_s += 45
    lines, _ = run(bus, rig.dir, [["clock"]], clock_offset_s=off)
    assert lines[0]["syncs"] == 0 and bus.stats["broadcasts"] == 1
    ev = [r["body"]["data"] for r in records(rig.dir, "event") if r["body"]["kind"] == "meter_clock"]
    assert "synced" not in ev[-1] and ev[-1]["dev_s"] >= 40


def test_clock_10_min_off_is_a_fault_and_not_synced(rig):
    bus = rig(clock_offset_s=600)
    off = noon_offset(bus)
    lines, _ = run(bus, rig.dir, [["clock"]], clock_offset_s=off)
    assert lines[0]["syncs"] == 0 and bus.stats["broadcasts"] == 0
    assert "meter_clock_fault" in lines[0]["events"]
    assert 595 <= meter_dev(bus) <= 605


def test_no_sync_inside_the_guard_window(rig):
    bus = rig(clock_offset_s=40)
    off = noon_offset(bus, 23, 57)
    lines, _ = run(bus, rig.dir, [["clock"]], clock_offset_s=off)
    assert lines[0]["result"] == "guard" and lines[0]["syncs"] == 0 and bus.stats["broadcasts"] == 0
    assert 38 <= meter_dev(bus) <= 42


def test_untrusted_clock_never_syncs(rig):
    bus = rig(clock_offset_s=40)
    off = noon_offset(bus)
    plan_steps = [["clock"]]
    d = rig.dir
    (d / "state").mkdir(exist_ok=True)
    plan = {"state_dir": str(d / "state"), "records": str(d / "records.jsonl"), "meter": A, "master": FAST,
            "cfg": {}, "clock_offset_s": off, "tsrc": "rtc", "steps": plan_steps}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(plan, f)
    try:
        rc, out = run_micropython(SCRIPT, bus.port, bus.control_port, f.name, timeout=60)
    finally:
        os.unlink(f.name)
    assert rc == 0 and '"result": "untrusted"' in out
    assert bus.stats["broadcasts"] == 0


def test_a_decreasing_register_raises_meter_anomaly_and_is_not_published(rig):
    bus = rig()
    lines, _ = run(bus, rig.dir, [["poll"], ["control", {"set_kwh": 10.0}], ["poll"], ["poll"]])
    assert lines[0]["ok"] and not lines[2]["ok"] and lines[3]["ok"]
    assert lines[2]["events"] == ["meter_anomaly"]
    energy = [r["body"]["kwh"]["fwd"] for r in records(rig.dir, "energy")]
    assert len(energy) == 2 and energy[0] > 900 and energy[1] < 11
    anomaly = [r["body"]["data"] for r in records(rig.dir, "event") if r["body"]["kind"] == "meter_anomaly"][0]
    assert anomaly["why"] == "decreased" and anomaly["reg"] == "fwd" and anomaly["prev"] > anomaly["now"]


def check_settled(bus, d, expect_dates):
    """The settle records: each equal to the simulator's settlement, first sent oldest first, all of expect_dates."""
    sim = {s["date"]: s for s in bus.meter(A).settlements()}
    first, seen = [], {}
    recs = [r["body"] for r in records(d, "settle")]
    for r in recs:
        s = sim[r["date"]]
        assert r["fwd"] == s["fwd"] and r["rev"] == s["rev"] and r["at"] == s["at"] and r["meter"] == A, r
        assert len(r["fwd"]) == 5  # the block: total and four tariffs
        if r["date"] in seen:
            assert seen[r["date"]] == (r["fwd"], r["rev"])  # a re-send after a cut is the same record
        else:
            seen[r["date"]] = (r["fwd"], r["rev"])
            first.append(r["date"])
    assert first == sorted(first) and first == expect_dates
    return recs


def test_settlements_caught_up_oldest_first_and_not_again(rig):
    bus = rig()
    start_day(bus, 2026, 8, 15)
    bus.meter(A).advance(80 * 86400)  # settles on Sep 1, Oct 1, Nov 1
    lines, _ = run(bus, rig.dir, [["settle"], ["settle"]])
    assert lines[0]["stored"] == 3 and lines[1]["stored"] == 3 and not lines[0]["behind"]
    dates = [s["date"] for s in bus.meter(A).settlements()]
    assert dates == ["2026-09-01", "2026-10-01", "2026-11-01"]
    recs = check_settled(bus, rig.dir, dates)
    assert len(recs) == 3 and recs[0]["at"] == "2026-09-01T00:00"
    # a month later: only the new one
    bus.meter(A).advance(31 * 86400)
    lines, _ = run(bus, rig.dir, [["settle"]])
    assert lines[0]["stored"] == 1
    check_settled(bus, rig.dir, dates + ["2026-12-01"])
    print("settlement bus time: %d ms for one" % lines[0]["bus_ms"])


def test_settlement_catch_up_survives_a_power_cut_and_honours_the_settlement_day(rig):
    bus = rig(settle_at=(15, 6))  # DI 04000B01 = 1506: the 15th at 06:00
    start_day(bus, 2026, 5, 20)
    bus.meter(A).advance(150 * 86400)  # settles Jun 15 .. Oct 15
    lines, _ = run(bus, rig.dir, [["cut_at", 3], ["settle"], ["restart"], ["settle"], ["settle"]])
    assert lines[1].get("cut") is True and lines[4]["stored"] == lines[3]["stored"]
    dates = [s["date"] for s in bus.meter(A).settlements()]
    assert dates == ["2026-06-15", "2026-07-15", "2026-08-15", "2026-09-15", "2026-10-15"]
    recs = check_settled(bus, rig.dir, dates)
    assert len(recs) == 5 + 1  # the record at the cut reached flash before its progress: sent again, same key
    assert recs[0]["at"] == "2026-06-15T06:00"


def test_settlements_beyond_the_meters_depth_are_gone(rig):
    bus = rig()
    start_day(bus, 2026, 1, 10)
    bus.meter(A).advance(420 * 86400)  # 14 settlements; the meter keeps 12
    run(bus, rig.dir, [["settle"]])
    dates = [s["date"] for s in bus.meter(A).settlements()]
    assert len(dates) == 12 and dates[0] == "2026-04-01"
    check_settled(bus, rig.dir, dates)


def test_a_meter_without_settlements_is_a_known_refusal(rig):
    bus = rig(settles=False)
    start_day(bus, 2026, 8, 15)
    bus.meter(A).advance(40 * 86400)
    lines, _ = run(bus, rig.dir, [["poll"], ["settle"], ["restart"], ["settle"]])
    assert lines[1]["ok"] and lines[1]["stored"] == 0 and records(rig.dir, "settle") == []
    caps = json.loads((rig.dir / "state" / "meter_caps.json").read_text())[A]["refused"]
    assert "04000B01" in caps and "00010001" in caps and "0001FF01" in caps
    assert lines[1]["stats"]["abnormal"] == 3  # first sight: not known yet (as metering counts a new refusal)
    # after a reset the refusals are known: the settlement day and total are asked again (a swapped meter may
    # have them), not as errors; the block is not asked
    assert lines[3]["stats"]["abnormal"] == 0 and lines[3]["stats"]["refused"] == 2


def test_a_settlement_during_catch_up_is_neither_lost_nor_misnamed(rig):
    bus = rig()
    start_day(bus, 2026, 7, 15)
    bus.meter(A).advance(108 * 86400 + 11 * 3600 + 45 * 60)  # 2026-10-31 23:45, three settlements made
    # 20 minutes of meter time a second from just before the walk (set in the same run): the meter settles on
    # 2026-11-01 while its 12 places are read
    lines, _ = run(bus, rig.dir, [["control", {"time_scale": 1200}], ["settle"], ["control", {"time_scale": 1}],
                                  ["settle"]])
    assert lines[1]["rewalks"] >= 1 or lines[1]["behind"], lines[1]  # behind: a slow start began the walk late
    dates = [s["date"] for s in bus.meter(A).settlements()]
    assert dates == ["2026-08-01", "2026-09-01", "2026-10-01", "2026-11-01"]
    recs = check_settled(bus, rig.dir, dates)
    assert len(recs) == 4
