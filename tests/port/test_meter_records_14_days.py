"""Fourteen simulated days, two meters, the terminal's meter-records modules under the unix port with outages
(days without the terminal, a reboot, a power cut in the middle of a catch-up, a meter's supply cut), the
records fed to the head-end: completeness 100 % every day, the daily energies add up to the 14-day figure
exactly, each equal to the meters' own freezes, and the power-down arrives as a meter event."""

import json
import os
import tempfile
from decimal import Decimal

import pytest

from harness import ROOT, run_micropython
from tools.headend import Ingest, Store, meter_records
from tools.sim.meter import MeterBus, MeterSpec

pytestmark = pytest.mark.port

SCRIPT = ROOT / "tests/port/mp/meter_records.py"
A, B = "000072007201", "000072007202"
TID = "861234567890123"
DAY = {"advance_s": 86400}


def test_fourteen_days_with_outages_are_complete_and_add_up(tmp_path):
    bus = MeterBus([MeterSpec(A, start_kwh=1000.0, base_kw=1.5), MeterSpec(B, start_kwh=20.0, base_kw=0.4)],
                   baud=9600, seed=11, latency_ms=(0, 3))
    bus.start(control_port=0)
    try:
        for m in bus.meters:
            m.set_clock((2026, 11, 1, 12, 0, 0))
        up = [["frozen"], ["events"]]
        steps = [["events"]]
        for day in range(1, 16):  # freezes of 2026-11-02 .. 2026-11-16
            steps.append(["control", DAY])
            if day in (3, 4, 5, 9, 10):
                continue  # the terminal is off
            if day == 6:
                steps.append(["restart"])  # back: the catch-up of four days runs at boot
            if day == 7:
                steps += [["control", {"mains": False, "address": B}], ["control", {"advance_s": 1800}],
                          ["control", {"mains": True, "address": B}]]
            if day == 11:
                steps += [["cut_at", 3], ["frozen"], ["restart"]]  # power fails in the middle of the catch-up
            steps += up
        plan = {"state_dir": str(tmp_path / "state"), "records": str(tmp_path / "records.jsonl"), "meter": A,
                "meters": [A, B], "master": {"baud": 9600, "timeout_ms": 300}, "cfg": {}, "steps": steps}
        (tmp_path / "state").mkdir()
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(plan, f)
        try:
            rc, out = run_micropython(SCRIPT, bus.port, bus.control_port, f.name, timeout=300)
        finally:
            os.unlink(f.name)
        assert rc == 0, out[-3000:]
        freezes = {m: {f["date"]: f for f in bus.meter(m).freezes()} for m in (A, B)}
    finally:
        bus.stop()
    lines = [x for x in (json.loads(y) for y in out.splitlines() if y.startswith("{")) if "step" in x]
    assert any(x.get("cut") for x in lines)
    records = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    store = Store(tmp_path / "fleet.db")
    try:
        ing = Ingest(store)
        reg = {"v": 2, "inc": "0badcafe", "seq": 1, "ts": 1795430400, "tsrc": "gnss", "why": "connect",
               "meters": [A, B], "pos": {"lat": 40.84, "lon": 111.75}, "imei": TID, "fw": "0.1.0", "csq": 20}
        assert ing.handle("bdmeter/%s/register" % TID, json.dumps(reg).encode()) == "stored"
        for seq, r in enumerate(records, start=2):
            body = dict(r["body"], v=2, inc="0badcafe", seq=seq)
            assert ing.handle("bdmeter/%s/%s" % (TID, r["kind"]), json.dumps(body).encode()) == "stored"
        days = ["2026-11-%02d" % d for d in range(2, 16)]
        comp = meter_records.completeness(store, days[0], days[-1])
        assert [r["pct"] for r in comp] == [100.0] * 14, comp
        rep = meter_records.day_energy(store, days[0], days[-1])
        assert not rep["missing"]
        assert sum(d["kwh"] for d in rep["days"]) == rep["period_kwh"]
        for m in (A, B):
            assert sum(d["meters"][m] for d in rep["days"]) == rep["period"][m]
            want = Decimal(str(freezes[m]["2026-11-16"]["fwd"][0])) - Decimal(str(freezes[m]["2026-11-02"]["fwd"][0]))
            assert rep["period"][m] == want  # the meters' own freezes, to the hundredth
        assert store.counters().get("frozen_conflict", 0) == 0
        ev = meter_records.events(store, meter=B, kind="power_down")
        assert len(ev) == 1 and ev[0]["end"] is not None
        print("14 days: %d records, %s kWh in the period; %d frozen sent twice after the cut"
              % (len(records), rep["period_kwh"], store.counters().get("frozen_again", 0)))
    finally:
        store.close()
