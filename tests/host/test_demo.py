"""`make demo`, shortened: terminals online, readings stored, line loss computed, the right area flagged."""

import re
import subprocess
import sys

import pytest

from harness import ROOT
from test_sim import on_tls_listener

pytestmark = pytest.mark.system


def test_demo_runs_and_flags_the_under_registering_area(tmp_path):
    # regression: the demo's meters count energy 600 times faster than real time, and the terminal's plausibility
    # check (a register may not grow faster than meter_max_kw allows) kept every reading after the first out as a
    # meter_anomaly: one reading per meter, an empty report, no line loss, "demo finished with errors"
    p = subprocess.run([sys.executable, "-m", "tools.demo", "--terminals", "2", "--seconds", "45",
                        "--out", str(tmp_path / "demo")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "demo done" in out and "Traceback" not in out, out[-4000:]
    rows = {m.group(1): (float(m.group(2)), m.group(3)) for m in re.finditer(
        r"(TA-0\d) .* rate\s+([\d.]+) %\s+expected\s+[\d.]+ %\s*(FLAGGED)?", out)}
    assert set(rows) == {"TA-01", "TA-02"}, out[-4000:]
    assert rows["TA-01"][1] is None and rows["TA-02"][1] == "FLAGGED", rows
    assert 3 < rows["TA-01"][0] < 9 and rows["TA-02"][0] > 20, rows
    # the broker as in the field (docs/SECURITY.md): accounts only, the head-end over TLS with its own account
    conf = (tmp_path / "demo" / "logs" / "mosquitto.conf").read_text()
    assert "allow_anonymous true" not in conf and "use_username_as_clientid true" in conf and "certfile" in conf
    assert "head-end over TLS" in out
    # every terminal speaks TLS through its simulated module: its CA uploaded from its flash, its account seen on the
    # broker's TLS listener (the port the demo gives the terminals)
    port = int(re.search(r"mosquitto on 127\.0\.0\.1:(\d+) \(terminals over TLS through their modules", out).group(1))
    tids = re.findall(r"terminal (\d{15})  meter", out)
    broker_log = (tmp_path / "demo" / "logs" / "mosquitto.log").read_text()
    assert len(tids) == 4 and all(on_tls_listener(broker_log, port, tid) for tid in tids), broker_log[-3000:]
    fw = (tmp_path / "demo" / "logs" / "firmware-t1.log").read_text()
    assert "event tls_files {'uploaded': ['ca.pem']}" in fw, fw[-3000:]
