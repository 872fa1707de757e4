"""The meters' monthly settlements: bus time of a month's settlement and of the 12-deep catch-up at 2400 baud, and
the bytes a settle record adds to the uplink (firmware/settlement.py under the unix port against the simulator)."""

import tempfile
import time
from pathlib import Path

from tools.bench.bench_meter_records import A, _records, _run, _wire_bytes
from tools.sim.meter import MeterBus, MeterSpec


def run():
    with tempfile.TemporaryDirectory(prefix="bench_settle_") as tmp:
        workdir = Path(tmp)
        bus = MeterBus([MeterSpec(A, start_kwh=1000.0)], baud=2400, seed=9)
        bus.start(control_port=0)
        try:
            m = bus.meter(A)
            m.set_clock((2025, 10, 10, 12, 0, 0))
            m.advance(400 * 86400)  # 13 settlements made, the meter keeps 12
            off = m.true_utc() - time.time()
            catch = _run(bus, workdir, [["settle"]], off)
            n0 = len(_records(workdir))
            m.advance(31 * 86400)
            month = _run(bus, workdir, [["settle"]], off)
            new = [r for r in _records(workdir)[n0:] if r["kind"] == "settle"]
        finally:
            bus.stop()
    return {
        "settle_bus_ms_catch_up_12": catch[0]["bus_ms"],
        "settle_s_catch_up_12": round(catch[0]["ms"] / 1000, 1),
        "settle_bus_ms_one_month": month[0]["bus_ms"],
        "settle_records_one_month": len(new),
        "settle_bytes_per_record": _wire_bytes(new[0]) if new else None,
    }
