"""The flash outbox on a 1 MB littlefs at ESP32 and RP2 settings: capacity, flash bytes per record, a week's
outage and its drain, and 1,000 random power cuts (all under the MicroPython unix port)."""

import json
import subprocess
from pathlib import Path

from tools.mpunix import micropython_path

ROOT = Path(__file__).resolve().parents[2]
OUTAGE = ROOT / "tests" / "port" / "mp" / "outbox_outage.py"
POWERCUT = ROOT / "tests" / "port" / "mp" / "outbox_powercut.py"
CUT_POINTS = 1000


def _mp(script, *args):
    exe = micropython_path()
    if not exe:
        raise RuntimeError("no `micropython` command; run `make venv`")
    p = subprocess.run([exe, "-X", "heapsize=8M", str(script)] + [str(a) for a in args], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode or not lines:
        raise RuntimeError("%s failed:\n%s%s" % (script.name, p.stdout[-3000:], p.stderr[-3000:]))
    return json.loads(lines[-1])


def run():
    out = {}
    for name in ("esp32", "rp2"):
        r = _mp(OUTAGE, name)
        if r["problems"]:
            raise RuntimeError("outage on %s: %s" % (name, r["problems"]))
        if r["capacity_records"] < 1000:
            raise RuntimeError("1 MB at %s settings holds %d records, below outbox_max" % (name, r["capacity_records"]))
        k = "outbox_1mb_%s_" % name
        out[k + "capacity_records"] = r["capacity_records"]
        out[k + "flash_bytes_per_record"] = r["flash_bytes_per_record"]
        out[k + "record_bytes"] = r["week"]["record_bytes"]
        for f in ("programmed_bytes_per_put", "erases_per_put", "programmed_bytes_per_ack", "erases_per_ack",
                  "open_ms_full_unix"):
            out[k + f] = r[f]
        out[k + "week_outage_delivered_dropped"] = "%d/%d" % (r["week"]["delivered"], r["week"]["dropped"])
        out[k + "3week_outage_delivered_dropped"] = "%d/%d" % (r["weeks3"]["delivered"], r["weeks3"]["dropped"])
        out[k + "192kb_free_week_delivered_dropped"] = "%d/%d" % (r["small"]["delivered"], r["small"]["dropped"])
        fb = r["full_boot"]
        out[k + "full_flash_boot_event_stored_dropped"] = "%s/%d" % (fb["boot_event_stored"], fb["dropped"])
    s = _mp(POWERCUT, CUT_POINTS, 20261128)
    out["outbox_powercut_cut_points"] = s["cut_points"]
    out["outbox_powercut_trials_flash_full"] = s["flash_filled"]
    out["outbox_powercut_failures"] = s["failures"]
    if s["failures"] or s["cut_points"] < CUT_POINTS:
        raise RuntimeError("power cuts: %s" % s)
    return out
