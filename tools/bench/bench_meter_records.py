"""The meters' own records: bus time a day spent on frozen values, event counters and the clock check at 2400 baud,
the 62-day catch-up, and the bytes a day the new records add to the uplink (firmware under the unix port)."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.sim.meter import MeterBus, MeterSpec

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests/port/mp/meter_records.py"
A = "000072007201"
_TOPIC = len("bdmeter/861234567890123/") + 4  # + MQTT fixed header, topic length, packet id (QoS 1)
_OUTBOX_FIELDS = len(',"seq":123456,"inc":"0123abcd"')


def _micropython():
    exe = Path(sys.executable).parent / "micropython"
    return str(exe) if exe.exists() else "micropython"


def _run(bus, workdir, steps, clock_offset_s=0.0):
    plan = {"state_dir": str(workdir / "state"), "records": str(workdir / "records.jsonl"), "meter": A,
            "master": {"baud": 2400, "timeout_ms": 1000}, "cfg": {}, "clock_offset_s": clock_offset_s,
            "steps": steps}
    (workdir / "state").mkdir(exist_ok=True)
    path = workdir / "plan.json"
    path.write_text(json.dumps(plan))
    p = subprocess.run([_micropython(), str(SCRIPT), str(bus.port), str(bus.control_port), str(path)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    if p.returncode:
        raise RuntimeError("bench script failed:\n" + p.stdout[-2000:] + p.stderr[-2000:])
    lines = (json.loads(x) for x in p.stdout.splitlines() if x.startswith("{"))
    return [x for x in lines if "step" in x]


def _records(workdir):
    p = workdir / "records.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def _wire_bytes(rec):
    leaf = rec["kind"]
    body = json.dumps(rec["body"], separators=(",", ":"))
    return len(body) + _OUTBOX_FIELDS + _TOPIC + len(leaf)


def run():
    with tempfile.TemporaryDirectory(prefix="bench_records_") as tmp:
        workdir = Path(tmp)
        bus = MeterBus([MeterSpec(A, start_kwh=1000.0, clock_offset_s=40)], baud=2400, seed=9)
        bus.start(control_port=0)
        try:
            m = bus.meter(A)
            local = m.true_utc() + m.utc_offset_s
            bus.command({"advance_s": (local // 86400 + 1) * 86400 + 12 * 3600 - local})  # local noon
            off = m.true_utc() - __import__("time").time()
            _run(bus, workdir, [["frozen"], ["events"]], off)  # first sight: baseline, nothing frozen yet
            n0 = len(_records(workdir))
            # one day: the freeze of the day, 24 hourly event checks (one power cut), the clock check with a sync
            bus.command({"advance_s": 86400})
            off = m.true_utc() - __import__("time").time()
            steps = [["frozen"], ["clock"]] + [["events"]] * 23 + [["control", {"mains": False}],
                                                                    ["control", {"mains": True}], ["events"]]
            day = _run(bus, workdir, steps, off)
            new = _records(workdir)[n0:]
            ms = {op: sum(x["ms"] for x in day if x["op"] == op) for op in ("frozen", "events", "clock")}
            # 62-day catch-up from scratch
            bus.command({"advance_s": 70 * 86400})
            catch = _run(bus, workdir, [["frozen"]], off)
        finally:
            bus.stop()
    per_kind = {}
    for r in new:
        leaf = r["kind"] if r["kind"] != "event" else "event:" + r["body"]["kind"]
        per_kind[leaf] = per_kind.get(leaf, 0) + _wire_bytes(r)
    figures = {
        "meter_records_bus_ms_per_day_frozen": ms["frozen"],
        "meter_records_bus_ms_per_day_events_24_checks": ms["events"],
        "meter_records_bus_ms_per_day_clock_with_sync": ms["clock"],
        "meter_records_bus_s_catch_up_62_days": round(catch[0]["ms"] / 1000, 1),
        "meter_records_bytes_per_day_one_meter": sum(per_kind.values()),
        "meter_records_bytes_per_day_by_kind": per_kind,
    }
    # with the rest of the terminal's traffic, when bench_terminal has measured it
    out = ROOT / "build" / "bench.json"
    terminal = json.loads(out.read_text()).get("terminal", {}) if out.exists() else {}
    if "wire_kb_per_day_default_intervals" in terminal:
        figures["wire_kb_per_day_with_meter_records"] = round(
            terminal["wire_kb_per_day_default_intervals"] + sum(per_kind.values()) / 1024, 1)
    return figures
