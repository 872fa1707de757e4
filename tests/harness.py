"""Shared test plumbing: paths, free loopback ports, child processes, mosquitto, micropython runs.

Every wait here has a bound and every child is killed (with its process group)
at teardown, so a failing test leaves no process behind.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
MICROPYTHON = str(VENV_BIN / "micropython") if (VENV_BIN / "micropython").exists() else shutil.which("micropython")

from tools.procs import LOOPBACK, Mosquitto, Proc, free_port, mosquitto_path, wait_port  # noqa: E402,F401


def run_micropython(script, *args, timeout=60.0, heapsize=None, cwd=ROOT):
    """Run a script under the unix port to completion; return (returncode, combined output)."""
    argv = [MICROPYTHON]
    if heapsize:
        argv += ["-X", "heapsize=%s" % heapsize]
    argv += [str(script)] + [str(a) for a in args]
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate(timeout=10)
        raise TimeoutError("%s did not finish in %.0f s; output:\n%s" % (script, timeout, out.decode(errors="replace")))
    return p.returncode, out.decode(errors="replace")


def wait_for(cond, timeout=10.0, what="condition"):
    """Poll `cond` every 50 ms until it is true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("%s not reached within %.1f s" % (what, timeout))
