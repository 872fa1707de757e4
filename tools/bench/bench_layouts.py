"""Heap taken by the firmware's code in each layout the unix port can run: .mpy files, and a ROMFS image (VfsRom).

A .mpy file read from a filesystem is copied into the heap: bytecode, constants and qstrs. The same .mpy in
a ROMFS image runs in place: bytecode and constant strings and bytes are referenced where the image lies, so
only the module and function objects and their tables take heap. On a board the image lies in flash; here
it has to be read into the heap first, so its own bytes are measured and left out of the code's figure.
Frozen code (manifest.py) needs a MicroPython build and is not measured here; docs/DEPLOY.md gives the
32-bit figure measured with one.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from tools import romfs
from tools.procs import ROOT

_MPY = ROOT / "build" / "mpy"

# Prints: heap bytes the imported code holds after a collection, the image bytes held (0 for .mpy files), the
# total heap, the port's word size in bits. main.py's load-time collection threshold is applied in both layouts.
_IMPORTS = """
import gc, sys
gc.threshold(4096)
image = None
if len(sys.argv) > 1:
    import vfs
    f = open(sys.argv[1], "rb")
    image = f.read()
    f.close()
    vfs.mount(vfs.VfsRom(image), "/rom")
    sys.path[:] = [".frozen", "/rom", "/rom/lib"]
else:
    sys.path.append("lib")
gc.collect()
base = gc.mem_alloc()
from firmware import app
gc.collect()
bits = 64 if sys.maxsize > 1 << 32 else 32
print(gc.mem_alloc() - base, len(image) if image else 0, gc.mem_alloc() + gc.mem_free(), bits)
"""


def _micropython():
    return str(Path(sys.executable).parent / "micropython")


def _load(image=None, heap_kb=None):
    """(code bytes, image bytes, heap total, word bits) after importing the firmware, or None if it does not load."""
    argv = [_micropython()] + (["-X", "heapsize=%dK" % heap_kb] if heap_kb else []) + ["-c", _IMPORTS]
    argv += [str(image)] if image else []
    with tempfile.TemporaryDirectory() as empty:
        cwd = empty if image else _MPY  # with the image, nothing on a filesystem can be imported by mistake
        out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60).stdout.split()
    return tuple(int(x) for x in out) if len(out) == 4 else None


def _smallest(image, lo=16, hi=512):
    """Smallest heap (KB) that loads the code, to 1 KB, by bisection."""
    if not _load(image, hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _load(image, mid):
            hi = mid
        else:
            lo = mid
    return hi


def run():
    with tempfile.TemporaryDirectory() as d:
        image = Path(d) / "bdmeter.romfs"
        size, count = romfs.build(_MPY, image)
        mpy_code, _, _, bits = _load()
        rom_code, rom_image, _, _ = _load(image)
        mpy_kb = _smallest(None)
        rom_kb = _smallest(image)
    out = {
        "romfs_image_bytes": size,
        "romfs_files": count,
        "heap_bytes_code_mpy_files": mpy_code,
        "heap_bytes_code_romfs": rom_code,
        "heap_code_romfs_vs_mpy_percent": round(100.0 * rom_code / mpy_code, 1),
        "heap_kb_smallest_to_load_mpy_files": mpy_kb,
        # the image shares this heap here; on a board it lies in flash
        "heap_kb_smallest_to_load_romfs_incl_image": rom_kb,
        "heap_kb_smallest_to_load_romfs_image_excluded": rom_kb - (rom_image + 1023) // 1024 if rom_kb else None,
        "micropython_word_bits": bits,
    }
    return out
