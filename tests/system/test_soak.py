"""A short soak inside `make test`: seeded random faults and power cuts, 0 lost and 0 gaps (`make soak` runs longer)."""

import pytest

from tools import soak

pytestmark = pytest.mark.system


def test_short_soak(tmp_path):
    figures = soak.run(cycles=10, seed=7, workdir=tmp_path)
    print({k: figures[k] for k in ("records_numbered", "records_lost", "faults_recovered", "recovery_s_max")})
    assert figures["records_lost"] == 0 and figures["sequence_gaps"] == []
    assert figures["faults_not_recovered"] == [], figures
    assert figures["unexpected_exits"] == 0
    assert figures["readings_not_served_by_meter"] == []
    assert figures["passed"]
