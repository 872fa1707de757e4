"""The real firmware (.mpy, unix port) over 14+ simulated meter days (the meter's time runs 7200 times faster:
a day in 12 s) with terminal power cuts and a meter supply cut in between. Everything the broker delivered goes
to the head-end: completeness 100 % for every day, and the sum of the daily energies equals the 14-day figure
exactly, both equal to the meter's own freezes; the month's settlement the meter made on the way arrives too,
equal to the meter's own."""

import json
import time
from decimal import Decimal

import pytest

from tools.headend import Ingest, Store, meter_records
from tools.rig import TerminalRig

pytestmark = pytest.mark.system

ADDR = "000072007201"
DAY_S = 12.0  # host seconds a meter day takes at the time scale below
SCALE = 86400 / DAY_S
LEAVES = ("register", "frozen", "settle", "meter_event", "energy", "event")  # what the head-end is given


def _dates(rig):
    return {f["date"] for f in rig.of("frozen")}


def test_fourteen_meter_days_with_outages(tmp_path):
    rig = TerminalRig(tmp_path, address=ADDR, start=False, meter_kw=2.0, speedup=1.0,
                      cfg={"poll_s": 2, "meter_clock_check": False, "meter_max_kw": 1e6, "frozen_pace_ms": 0,
                           "meter_events_s": 60})
    try:
        meter = rig.bus.meter(ADDR)
        meter.set_clock((2026, 11, 24, 12, 0, 0))  # the 15 days run over the settlement of 2026-12-01
        rig.bus.command({"time_scale": SCALE})
        rig.start_firmware()
        rig.wait("first readings", lambda: len(rig.of("energy")) >= 2, 60)
        # the terminal up two days, off three, up, the meter's supply cut for a day, a power cut, ...
        time.sleep(2 * DAY_S)
        rig.power_cut()
        time.sleep(3 * DAY_S)
        rig.start_firmware()
        rig.wait("a catch-up at boot", lambda: len(_dates(rig)) >= 4, 60)
        time.sleep(2 * DAY_S)
        rig.bus.command({"mains": False, "address": ADDR})
        time.sleep(DAY_S)
        rig.bus.command({"mains": True, "address": ADDR})
        time.sleep(2 * DAY_S)
        rig.power_cut()
        time.sleep(5 * DAY_S)
        rig.bus.command({"time_scale": 1})  # the meter's days stop rolling: the last catch-up
        want = [f["date"] for f in meter.freezes()]
        assert len(want) >= 15, want
        rig.start_firmware()
        rig.wait("every freeze at the broker", lambda: set(want) <= _dates(rig), 90)
        rig.wait("the power-down as a meter event",
                 lambda: [e for e in rig.of("meter_event") if e["kind"] == "power_down" and e.get("end")], 120)
        settled = meter.settlements()
        assert [x["date"] for x in settled] == ["2026-12-01"]
        rig.wait("the settlement at the broker", lambda: rig.of("settle"), 60)
        got = rig.of("settle")[0]
        assert (got["date"], got["at"], got["fwd"], got["rev"]) == \
            (settled[0]["date"], settled[0]["at"], settled[0]["fwd"], settled[0]["rev"])
        freezes = {f["date"]: f for f in meter.freezes()}
        store = Store(tmp_path / "fleet.db")
        try:
            ing = Ingest(store)
            for _t, leaf, body, retained in list(rig.msgs):
                if leaf in LEAVES and isinstance(body, dict):
                    ing.handle(rig.prefix + leaf, json.dumps(body).encode(), retained=retained)
            days = want[:14]
            comp = meter_records.completeness(store, days[0], days[-1])
            assert [r["pct"] for r in comp] == [100.0] * 14, comp
            rep = meter_records.day_energy(store, days[0], days[-1])
            assert not rep["missing"] and sum(d["kwh"] for d in rep["days"]) == rep["period_kwh"]
            own = Decimal(str(freezes[want[14]]["fwd"][0])) - Decimal(str(freezes[days[0]]["fwd"][0]))
            assert rep["period_kwh"] == own
            assert store.counters().get("frozen_conflict", 0) == 0
            assert [e for e in meter_records.events(store, kind="power_down") if e["end"]]
            assert [r["date"] for r in meter_records.settlements(store)] == ["2026-12-01"]
            print("14 meter days: %s kWh, %d frozen records (%d sent again)" % (
                rep["period_kwh"], len(rig.of("frozen")), store.counters().get("frozen_again", 0)))
        finally:
            store.close()
    finally:
        rig.close()
