"""A signed update survives a power cut at any block write: >= 200 random cut points, 0 failures.

The cuts fall in the download, the staging checks, the switch, the confirmation and the rollback; after
each the flash boots one complete version, old or new, and the update then completes from there. The
long form (thousands of cuts) runs in `make bench` (bench_update).
"""

import json

import pytest

from harness import ROOT, run_micropython

pytestmark = pytest.mark.port


def test_update_survives_power_cuts_on_littlefs():
    rc, out = run_micropython(ROOT / "tests/port/mp/update_powercut.py", 260, 20261128, timeout=300)
    summary = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    print("update power cuts: %d trials, %d cut points, %d failures" % (
        summary["trials"], summary["cut_points"], summary["failures"]))
    assert rc == 0, out[-3000:]
    assert summary["failures"] == 0, summary["examples"]
    assert summary["cut_points"] >= 200
