"""The terminal boots, and keeps running, on a littlefs filled to the last byte (no reboot loop)."""

import json

import pytest

from harness import ROOT, run_micropython

pytestmark = pytest.mark.port


def test_terminal_boots_on_a_full_flash():
    # regression: `crash: OSError: 28` every ~5 s: the boot event's write failed before any task started
    rc, out = run_micropython(ROOT / "tests/port/mp/terminal_fullflash.py", timeout=120, heapsize="8M")
    assert rc == 0, out[-3000:]
    r = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert r["boots"] == ["running", "running"], r  # both boots start their tasks and keep running
    assert all(n >= 1 for n in r["write_fail"]), r  # the flash really was full at each boot
    assert r["reboot_events"] == 2 and r["overflow_events"] >= 1, r  # stored by dropping the oldest, reported
    assert r["dropped"] > 0 and r["records"] + r["dropped"] >= r["backlog"], r
