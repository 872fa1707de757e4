"""bdmeter entry point: `micropython main.py [config.json]` on the unix port;
on a board, MicroPython runs it after boot.py and the config comes from flash."""

import gc
import sys

# While the code loads, collect after every 4 KB allocated instead of only when the heap is full: the
# loader's garbage is reclaimed before the next module is placed above it, so the code packs tighter. On the
# 64-bit unix port the smallest heap that loads it drops by about 16 KB (179 -> 163 KB). Once running,
# collecting that often would triple the CPU per poll cycle for no measurable gain, so it stops.
gc.threshold(4096)


def _paths():
    # The tree beside this file mirrors a board's flash: lib/ holds the
    # drivers and the fetched packages. In a source checkout the packages
    # fetched by `make deps` sit in build/lib.
    here = __file__.rpartition("/")[0] or "."
    for sub in ("/lib", "/build/lib"):
        if here + sub not in sys.path:
            sys.path.append(here + sub)


_paths()

from firmware import app  # noqa: E402

gc.threshold(-1)  # loaded: collect only when an allocation needs it
try:
    app.main(sys.argv[1] if len(sys.argv) > 1 else None)
except KeyboardInterrupt:
    # A second Ctrl-C (a terminal signals the whole process group, then an impatient user) can land after
    # app.main has stopped the terminal: it is stopped all the same, so end quietly with status 0.
    pass
