"""The firmware boots under the unix port from .mpy, dials both UART peers, and stops cleanly."""

import json
import signal
import socket
import sys

import pytest

from harness import LOOPBACK, ROOT, Proc

pytestmark = pytest.mark.system


@pytest.fixture
def peers():
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.bind((LOOPBACK, 0))
        s.listen(1)
        s.settimeout(30)
        socks.append(s)
    yield socks
    for s in socks:
        s.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_boots_connects_and_stops_cleanly(tmp_path, peers, sig):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "board": "unix",
        "meter_uart": "%s:%d" % (LOOPBACK, peers[0].getsockname()[1]),
        "modem_uart": "%s:%d" % (LOOPBACK, peers[1].getsockname()[1]),
        "state_dir": str(tmp_path / "flash"),
    }))
    fw = Proc([sys.executable, "-m", "tools.mpunix", ROOT / "build/mpy/main.py", cfg], "firmware", log_dir=tmp_path)
    try:
        conns = [s.accept()[0] for s in peers]  # both UART peers dialled (bounded by settimeout)
        fw.wait_output("starting", timeout=30)
        fw.signal(sig)
        assert fw.wait(timeout=15) == 0, fw.output()
        assert "stopped" in fw.output()
        for c in conns:
            c.close()
    finally:
        fw.kill()


def test_a_power_cut_leaves_no_firmware_running(tmp_path, peers):
    # SIGKILL to the launcher's group, as the rig's power cut: MicroPython (in a group of its own) must go too,
    # else it keeps the UARTs and the flash of the next start (its UART connections close when it is gone)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "board": "unix",
        "meter_uart": "%s:%d" % (LOOPBACK, peers[0].getsockname()[1]),
        "modem_uart": "%s:%d" % (LOOPBACK, peers[1].getsockname()[1]),
        "state_dir": str(tmp_path / "flash"),
    }))
    fw = Proc([sys.executable, "-m", "tools.mpunix", ROOT / "build/mpy/main.py", cfg], "firmware", log_dir=tmp_path)
    conns = []
    try:
        conns = [s.accept()[0] for s in peers]
        fw.wait_output("starting", timeout=30)
    finally:
        fw.kill()
    for c in conns:
        c.settimeout(10)
        try:
            while c.recv(4096):  # the firmware may still have written something: bounded by the timeout
                pass
        except socket.timeout:
            raise AssertionError("the firmware still holds its UART after a SIGKILL to the launcher's group")
        finally:
            c.close()
