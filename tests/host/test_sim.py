"""`make sim`: every component starts, the terminal comes online at the head-end, one Ctrl-C stops them all."""

import argparse
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from harness import ROOT, free_port

pytestmark = pytest.mark.system
PORT_OPTIONS = ("--mqtt-port", "--mqtt-tls-port", "--mqtt-service-port", "--meter-port", "--modem-port",
                "--modem-ctl-port")


def _gone(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def on_tls_listener(broker_log, port, user):
    """True when the broker's log shows `user` logged in on a connection it accepted on `port`."""
    peers = set(re.findall(r"New connection from (\S+) on port %d\." % port, broker_log))
    logged = re.findall(r"New client connected from (\S+) as \S+ \(.*u'([^']*)'\)", broker_log)
    return any(peer in peers and u == user for peer, u in logged)


def test_sim_starts_everything_and_one_ctrl_c_stops_everything(tmp_path):
    log = tmp_path / "sim.log"
    argv = [sys.executable, "-m", "tools.sim_all", "--dir", str(tmp_path / "sim")]
    ports = {opt: free_port() for opt in PORT_OPTIONS}  # not the documented defaults: other runs may hold those
    for opt, port in ports.items():
        argv += [opt, str(port)]
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
        # the broker is secured (accounts, the head-end over TLS); a second shell reaches the terminal with the
        # head-end's options that the sim wrote
        conf = (tmp_path / "sim" / "mosquitto.conf").read_text()
        assert "allow_anonymous true" not in conf and "use_username_as_clientid true" in conf
        # the terminal is on TLS through the simulated module: its CA uploaded from its flash, its account seen on
        # the broker's TLS listener and never on the plain one
        cfg = json.loads((tmp_path / "sim" / "config.json").read_text())
        assert cfg["broker_tls"] is True and cfg["broker_port"] == ports["--mqtt-tls-port"] and cfg["tls_verify"]
        assert Path(cfg["tls_ca"]) == (tmp_path / "sim" / "state" / "ca.pem").resolve()
        assert "event tls_files {'uploaded': ['ca.pem']}" in text, text[-4000:]
        mqtt = "\n".join(line[11:] for line in text.splitlines() if line.startswith("mqtt     | "))
        assert on_tls_listener(mqtt, ports["--mqtt-tls-port"], "861234567890123"), mqtt[-3000:]
        assert not on_tls_listener(mqtt, ports["--mqtt-port"], "861234567890123"), mqtt[-3000:]
        opts = (tmp_path / "sim" / "headend.args").read_text().split()
        q = subprocess.run([sys.executable, "-m", "tools.headend", "query", "--db", str(tmp_path / "sim" / "fleet.db"),
                            "--timeout", "20"] + opts + ["861234567890123", "address"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert q.returncode == 0 and '"ok": true' in q.stdout, q.stdout + q.stderr
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


def test_ctrl_c_under_make_sim_on_a_terminal_stops_everything_exit_0(tmp_path):
    master, slave = os.openpty()

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    ports = " ".join("%s %d" % (opt, free_port()) for opt in PORT_OPTIONS)
    p = subprocess.Popen(["make", "sim", "SIM_ARGS=--dir %s %s" % (tmp_path / "sim", ports)], cwd=ROOT, stdin=slave,
                         stdout=slave, stderr=slave, preexec_fn=controlling_terminal)
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
        return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")

    pids = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "is online at the head-end" not in text() and p.poll() is None:
            time.sleep(0.2)
        assert "is online at the head-end" in text(), text()[-4000:]
        pids = {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", text())}
        os.write(master, b"\x03")  # Ctrl-C, through the terminal's line discipline
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        for pid in pids.values():
            if not _gone(pid):
                os.killpg(pid, signal.SIGKILL)
        reader.join(timeout=5)
        os.close(master)
    out = text()
    assert rc == 0, out[-3000:]
    assert "make: ***" not in out and "Interrupt" not in out and "Traceback" not in out, out[-3000:]
    assert "sim      | Ctrl-C: stopping" in out and "firmware 0" in out, out[-2000:]
    assert len(pids) == 5 and not [n for n, pid in pids.items() if not _gone(pid)]


def test_no_tls_puts_the_terminal_back_on_plain_tcp_with_its_account(tmp_path):
    from tools import sim_all

    a = argparse.Namespace(config=None, plain_broker=False, no_tls=True, meter_port=1, modem_port=2,
                           modem_ctl_port=3, mqtt_port=4, mqtt_tls_port=5)
    cfg = json.loads(sim_all._config(a, tmp_path, None).read_text())
    assert cfg["broker_port"] == 4 and "broker_tls" not in cfg and cfg["broker_user"] == "861234567890123"
    assert not (tmp_path / "state" / "ca.pem").exists()


def test_sim_refuses_a_bad_config_before_starting_anything(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"pol_s": 60, "poll_s": 0}')
    p = subprocess.run([sys.executable, "-m", "tools.sim_all", "--config", str(bad), "--dir", str(tmp_path / "sim")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "pol_s" in p.stdout and "poll_s" in p.stdout and "started" not in p.stdout, p.stdout
