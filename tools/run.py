"""`make run`: check the config on the host, then run the firmware from build/mpy under the unix port.

A missing or invalid config is refused with every problem listed (exit 2)
before anything starts. One Ctrl-C (or SIGINT/SIGTERM) stops the firmware
cleanly with exit 0 (see tools/mpunix.py).

    python -m tools.run CONFIG [-X heapsize=256K]
"""

import signal
import sys

from tools import checkconfig, mpunix
from tools.procs import ROOT


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # until the launcher takes over, a Ctrl-C simply ends this quietly (no traceback)
    signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(130))
    if not argv or argv[0].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path, extra = argv[0], argv[1:]
    found = checkconfig.problems(path)
    for line in found:
        print(line, flush=True)
    if found:
        print("%s: %d problem(s): not started" % (path, len(found)), file=sys.stderr)
        return 2
    print("%s: ok" % path, flush=True)
    main_py = ROOT / "build" / "mpy" / "main.py"
    if not main_py.exists():
        print("run: %s is missing: run `make mpy` first" % main_py, file=sys.stderr)
        return 2
    return mpunix.main(extra + [str(main_py), path])


if __name__ == "__main__":
    sys.exit(main())
