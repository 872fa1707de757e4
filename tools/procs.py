"""Host-side process plumbing shared by the tools and the tests: loopback ports, child processes, mosquitto.

Every wait has a bound and every child runs in its own process group, so it
can be killed whole (the firmware runs as launcher + micropython) and nothing
is left behind.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


def take_terminal():
    """Make this process's group the terminal's foreground group, so that a Ctrl-C reaches only it (and its
    children), not `make` and the shell around it. Returns how to give the terminal back, or None when there is
    no terminal or the process runs in the background."""
    import sys

    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd):
            return None
        old = os.tcgetpgrp(fd)
        if old != os.getpgrp():
            return None
        if os.getpgrp() != os.getpid():
            os.setpgid(0, 0)
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background group may not take the terminal otherwise
        os.tcsetpgrp(fd, os.getpgrp())
    except (OSError, ValueError, AttributeError):
        return None

    def give_back():
        try:
            os.tcsetpgrp(fd, old)
        except OSError:
            pass

    return give_back


def free_port():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host=LOOPBACK):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nothing listens on %s:%d after %.1f s" % (host, port, timeout))


class Proc:
    """A child process in its own process group, with its output in a file."""

    def __init__(self, argv, name, cwd=ROOT, env=None, log_dir=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="bdmeter-"))
        self.log_path = self.log_dir / ("%s.log" % name)
        self._log = open(self.log_path, "ab")
        self.p = subprocess.Popen(self.argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def output(self):
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_output(self, needle, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.output():
                return True
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise TimeoutError("%s: %r not seen in %.1f s (exit %s); output:\n%s"
                           % (self.name, needle, timeout, self.p.poll(), self.output()[-4000:]))

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def wait(self, timeout=10.0):
        return self.p.wait(timeout=timeout)

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=10)
        self._log.close()

    def interrupt(self):
        """SIGINT to the whole process group, as a terminal's Ctrl-C does (the launcher and MicroPython at once)."""
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def stop(self, timeout=5.0):
        """SIGINT to the group, then SIGKILL if it has not gone within `timeout`."""
        if self.p.poll() is None:
            self.interrupt()
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.p.returncode


def mosquitto_path():
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


class Mosquitto:
    """A real mosquitto on a free loopback port, anonymous access.

    With `persistent`, sessions and queued QoS 1 messages are saved when it stops,
    so a graceful restart (as in maintenance) loses nothing it had accepted.
    """

    def __init__(self, log_dir=None, port=None, persistent=False):
        exe = mosquitto_path()
        if not exe:
            raise RuntimeError("mosquitto is not installed: run `make venv` (installs Debian's mosquitto)")
        self.port = port or free_port()
        self.persistent = persistent
        self.dir = Path(log_dir or tempfile.mkdtemp(prefix="bdmeter-mqtt-"))
        conf = self.dir / "mosquitto.conf"
        # set_tcp_nodelay: small MQTT packets go out at once (Nagle + delayed ACKs would add ~40 ms per hop)
        text = "set_tcp_nodelay true\nlistener %d %s\nallow_anonymous true\n" % (self.port, LOOPBACK)
        if persistent:
            text += "persistence true\npersistence_location %s/\nautosave_interval 1\n" % self.dir
        else:
            text += "persistence false\n"
        conf.write_text(text)
        self.proc = Proc([exe, "-c", conf], "mosquitto", log_dir=self.dir)
        wait_port(self.port, timeout=10)

    def stop(self):
        self.proc.kill()

    def restart(self):
        """Stop gracefully (SIGINT: it saves its state when persistent) and start again on the same port."""
        self.proc.stop(timeout=10)
        self.__init__(log_dir=self.dir, port=self.port, persistent=self.persistent)
