"""A short soak inside `make test`: seeded random faults and power cuts, 0 lost and 0 gaps (`make soak` runs longer)."""

import pytest

from tools import soak

pytestmark = pytest.mark.system

# A RAM budget with room to spare over the smallest heap that passes (`make bench` measures it): a change that
# needs much more RAM shows up here as a MemoryError, which fails the soak at once. The code loaded from .mpy
# takes about 246 KB of it on the 64-bit unix port (a board runs it frozen or from ROMFS: docs/DEPLOY.md).
HEAP_BUDGET = "400K"


def test_short_soak(tmp_path):
    figures = soak.run(cycles=10, seed=7, workdir=tmp_path, heapsize=HEAP_BUDGET, fail_on="MemoryError")
    print({k: figures[k] for k in ("records_numbered", "records_lost", "faults_recovered", "recovery_s_max",
                                   "self_resets")})
    assert figures["records_lost"] == 0 and figures["sequence_gaps"] == []
    assert figures["faults_not_recovered"] == [], figures
    assert figures["unexpected_exits"] == 0
    assert figures["self_resets"] == []
    assert figures["readings_not_served_by_meter"] == []
    assert figures["passed"]
