"""The update task's confirmation and refusal rules, under the unix port with a stand-in terminal."""

import pytest

from harness import ROOT, run_micropython

pytestmark = pytest.mark.port


def test_update_task_rules(tmp_path):
    rc, out = run_micropython(ROOT / "tests/port/mp/update_task.py", tmp_path, timeout=120)
    assert rc == 0 and "0 failed" in out, out[-3000:]
    assert out.count("PASS") == 5
