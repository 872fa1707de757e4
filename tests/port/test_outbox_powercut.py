"""The outbox on littlefs survives power cut at any block write (short form; `make bench` cuts at 1,000 points)."""

import json

import pytest

from harness import ROOT, run_micropython

pytestmark = pytest.mark.port

SCRIPT = ROOT / "tests/port/mp/outbox_powercut.py"
CUT_POINTS = 150  # tools/bench/bench_outbox.py runs 1,000


def test_outbox_survives_power_cuts_on_littlefs():
    rc, out = run_micropython(SCRIPT, CUT_POINTS, 20261123, timeout=300, heapsize="8M")
    summary = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    print("power cuts: %d trials, %d cut points, %d failures, %d with the flash full" % (
        summary["trials"], summary["cut_points"], summary["failures"], summary["flash_filled"]))
    assert rc == 0, out[-3000:]
    assert summary["failures"] == 0, summary["examples"]
    assert summary["cut_points"] >= CUT_POINTS
    assert summary["flash_filled"] > 0  # some trials cut while the ring was bounded by the flash
