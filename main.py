"""bdmeter entry point: `micropython main.py [config.json]` on the unix port;
on a board, MicroPython runs it after boot.py and the config comes from flash."""

import gc
import sys

# Collect after every few KB allocated instead of only when the heap is full: garbage (the module loader's,
# then the tasks') is reclaimed before new objects are placed above it, so the heap fragments less and a
# smaller one suffices (`make bench` measures it).
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

app.main(sys.argv[1] if len(sys.argv) > 1 else None)
