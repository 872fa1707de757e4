"""`make sim`: every component starts, the terminal comes online at the head-end, one Ctrl-C stops them all."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from harness import ROOT, free_port

pytestmark = pytest.mark.system


def _gone(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sim_starts_everything_and_one_ctrl_c_stops_everything(tmp_path):
    log = tmp_path / "sim.log"
    argv = [sys.executable, "-m", "tools.sim_all", "--dir", str(tmp_path / "sim")]
    for opt in ("--mqtt-port", "--meter-port", "--modem-port", "--modem-ctl-port"):
        argv += [opt, str(free_port())]  # not the documented defaults: other runs may hold those
    with open(log, "wb") as out:
        p = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
    pids = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "is online at the head-end" not in log.read_text():
            assert p.poll() is None, log.read_text()[-4000:]
            time.sleep(0.2)
        text = log.read_text()
        assert "terminal 861234567890123 is online at the head-end" in text, text[-4000:]
        pids = {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", text)}
        assert sorted(pids) == ["firmware", "headend", "meter", "modem", "mqtt"], text[-4000:]
        for name in ("mqtt", "meter", "modem", "headend", "firmware"):  # every line says whose it is
            assert re.search(r"^%-8s \| " % name, text, re.M), name
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        for pid in pids.values() if isinstance(pids, dict) else ():
            if not _gone(pid):
                os.killpg(pid, signal.SIGKILL)
    text = log.read_text()
    assert rc == 0, text[-4000:]
    assert "Traceback" not in text, text[-4000:]
    assert "stopped: " in text and "firmware 0" in text, text[-2000:]
    left = [name for name, pid in pids.items() if not _gone(pid)]
    assert not left, "still running after the stop: %s" % left
