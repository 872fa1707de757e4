"""A week's server outage on a 1 MB littlefs at ESP32 and RP2 settings, then the server returns.

Regression: one 4 KB block per record filled 1 MB after 236 records; the boot event's write then failed with
OSError 28 before any task started, every boot (a reboot loop), and nothing ever drained.
"""

import json

import pytest

from harness import ROOT, run_micropython

pytestmark = pytest.mark.port

SCRIPT = ROOT / "tests/port/mp/outbox_outage.py"


@pytest.mark.parametrize("settings", ["esp32", "rp2"])
def test_week_outage_on_1mb_littlefs(settings):
    rc, out = run_micropython(SCRIPT, settings, "quick", timeout=300, heapsize="8M")  # make bench: capacity
    assert rc == 0, out[-3000:]
    r = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert r["problems"] == [], r
    week = r["week"]
    assert week["dropped"] == 0 and week["delivered"] == week["records"] >= 7 * 96
    for key in ("weeks3", "small"):  # overflowing by count, by flash: newest delivered, the rest counted
        assert r[key]["delivered"] + r[key]["dropped"] == r[key]["records"] and r[key]["corrupt"] == 0
    assert r["weeks3"]["delivered"] == 1000
    assert r["small"]["free_low_bytes"] >= 32768 - 4096
    fb = r["full_boot"]
    assert fb["flash_full_at_boot"]  # not even a 64-byte file could be written
    assert fb["boot_event_stored"] or fb["dropped"] > 0
