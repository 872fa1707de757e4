"""`make run` by hand: the config is checked on the host first, and one Ctrl-C stops the firmware cleanly, exit 0.

The Ctrl-C tests start the real launcher (and, on a pseudo-terminal, the real
`make run`) against the simulators and a real mosquitto, as a user would.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import threading
import time

import pytest

from harness import ROOT
from tools import checkconfig
from tools.rig import TerminalRig

pytestmark = pytest.mark.system

KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
PY = sys.executable


def _check(path):
    p = subprocess.run([PY, "-m", "tools.checkconfig", str(path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    return p.returncode, p.stdout + p.stderr


def test_checkconfig_lists_every_problem_and_masks_secrets(tmp_path):
    bad_key = "000102030405060708090a0b0c0d0e0f1011zz"
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"pol_s": 60, "cmd_key": bad_key, "broker_pass": 'x"y-s3cret', "hdop_max": 1e-300,
                                "relocation_m": 1e308, "inst": ["v", "v"], "poll_s": 60}))
    rc, out = _check(path)
    assert rc == 2, out
    for word in ("pol_s", "did you mean poll_s", "cmd_key", "broker_pass", "hdop_max", "relocation_m", "inst"):
        assert word in out, (word, out)
    assert "poll_s:" not in out  # the good key is not a problem
    assert bad_key[:8] not in out and "s3cret" not in out
    assert len(checkconfig.problems(str(path))) == 6


def test_checkconfig_missing_unreadable_and_good_files(tmp_path):
    rc, out = _check(tmp_path / "termnal.json")
    assert rc == 2 and "termnal.json" in out and "No such file" in out
    for text in ('{"poll_s": ', "[]", '{"poll_s": NaN}', "\xff"):
        p = tmp_path / "bad.json"
        p.write_bytes(text.encode("latin-1"))
        rc, out = _check(p)
        assert rc == 2 and "bad.json" in out, (text, out)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"poll_s": 60, "cmd_key": KEY}))
    rc, out = _check(good)
    assert rc == 0 and out.strip() == "%s: ok" % good
    assert checkconfig.problems(str(good)) == []


def test_make_run_refuses_a_missing_or_invalid_config(tmp_path):
    for name, text in (("termnal.json", None), ("bad.json", '{"pol_s": 60, "poll_s": 0}')):
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        p = subprocess.run(["make", "run", "CONFIG=%s" % path], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
        out = p.stdout + p.stderr
        assert p.returncode != 0, out
        assert name in out and "bdmeter 0.1" not in out and "starting" not in out, out
        if text is not None:
            assert "pol_s" in out and "poll_s" in out  # both problems, not only the first


@pytest.fixture
def rig(tmp_path):
    r = TerminalRig(tmp_path, imei="861234567890155", key=KEY, start=False)
    yield r
    r.close()


def _wait_text(get, needle, timeout, proc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in get():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError("%r not seen in %.0f s (exit %s):\n%s" % (needle, timeout, proc.poll(), get()[-3000:]))


def test_one_sigint_to_the_process_group_stops_it_cleanly(rig, tmp_path):
    # regression: the shell signals the whole group and the launcher forwarded a second SIGINT: a
    # KeyboardInterrupt traceback from lib/tcpuart.py and exit 130
    log = tmp_path / "run.log"
    with open(log, "wb") as out:  # what `make run` runs
        p = subprocess.Popen([PY, "-m", "tools.run", str(rig.cfg_path)], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_text(log.read_text, "connected to", 60, p)
        os.killpg(p.pid, signal.SIGINT)
        rc = p.wait(timeout=20)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    assert text.rstrip().endswith("INFO bdmeter: stopped"), text[-1000:]


@pytest.mark.parametrize("gap_s", [0.0, 0.01, 0.2])
def test_an_impatient_second_sigint_still_stops_it_cleanly(rig, tmp_path, gap_s):
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        p = subprocess.Popen([PY, "-m", "tools.run", str(rig.cfg_path)], cwd=ROOT, stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_text(log.read_text, "connected to", 60, p)
        os.killpg(p.pid, signal.SIGINT)
        time.sleep(gap_s)
        try:
            os.killpg(p.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        rc = p.wait(timeout=20)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
    text = log.read_text()
    assert rc == 0 and "Traceback" not in text, text[-3000:]
    assert text.rstrip().endswith("INFO bdmeter: stopped"), text[-1000:]


def test_ctrl_c_under_make_run_on_a_terminal_exits_0(rig):
    # regression: make itself got the terminal's SIGINT: `make: *** [run] Interrupt` / Error 130
    master, slave = os.openpty()

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen(["make", "run", "CONFIG=%s" % rig.cfg_path], cwd=ROOT, stdin=slave, stdout=slave,
                         stderr=slave, preexec_fn=controlling_terminal)
    os.close(slave)
    chunks = []

    def read():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: every process holding the terminal has gone
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def text():
        return b"".join(chunks).decode(errors="replace")

    try:
        _wait_text(text, "connected to", 120, p)
        os.write(master, b"\x03")  # Ctrl-C, through the terminal's line discipline
        rc = p.wait(timeout=20)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        reader.join(timeout=5)
        os.close(master)
    out = text()
    assert rc == 0, out[-3000:]
    assert "make: ***" not in out and "Interrupt" not in out and "Traceback" not in out, out[-3000:]
    assert "INFO bdmeter: stopped" in out, out[-1000:]
