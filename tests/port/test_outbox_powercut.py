"""The outbox on littlefs survives power cut at any block write: >= 1,000 random cut points, 0 failures."""

import json

import pytest

from harness import ROOT, run_micropython

pytestmark = pytest.mark.port


def test_outbox_survives_power_cuts_on_littlefs():
    rc, out = run_micropython(ROOT / "tests/port/mp/outbox_powercut.py", 1000, 20261123, timeout=240)
    summary = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    print("power cuts: %d trials, %d cut points, %d failures" % (summary["trials"], summary["cut_points"],
                                                                   summary["failures"]))
    assert rc == 0, out[-3000:]
    assert summary["failures"] == 0, summary["examples"]
    assert summary["cut_points"] >= 1000
