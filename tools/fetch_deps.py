"""Fetch the board's MicroPython packages by name from PyPI into build/lib.

The pinned sdists (requirements-mpy.txt) predate setup.py-less packaging, so
`pip download` stops after unpacking them; `--no-clean` with a private TMPDIR
leaves the unpacked sources behind, and the package directories are copied
from there. Nothing fetched here is ever committed (build/ is git-ignored).
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "build" / "lib"
# package name on PyPI -> what it provides, relative to the unpacked sdist
PROVIDES = {
    "micropython-umqtt.simple": ["umqtt"],
    "micropython-logging": ["logging"],
}


def pinned():
    for line in (ROOT / "requirements-mpy.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            yield name, version


def fetch(name, version, dest):
    with tempfile.TemporaryDirectory(prefix="bdmeter-deps-") as tmp:
        env = dict(os.environ, TMPDIR=tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-clean", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", "-q", "-d", os.path.join(tmp, "dl"), f"{name}=={version}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        for top in PROVIDES[name]:
            found = sorted(Path(tmp).glob(f"pip-*/*/{top}"))
            if not found:
                sys.exit(f"fetch_deps: {name}=={version} was not unpacked (no '{top}/' found): "
                         "is PyPI reachable and the version right?")
            target = dest / top
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(found[0], target, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    print(f"fetched {name}=={version} -> {dest.relative_to(ROOT)}/{' '.join(PROVIDES[name])}")


def main():
    DEST.mkdir(parents=True, exist_ok=True)
    for name, version in pinned():
        if name not in PROVIDES:
            sys.exit(f"fetch_deps: {name} has no entry in PROVIDES")
        fetch(name, version, DEST)
    (DEST / ".pins").write_text((ROOT / "requirements-mpy.txt").read_text())


if __name__ == "__main__":
    main()
