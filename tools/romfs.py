"""Pack the compiled tree (build/mpy) into a ROMFS image, whose .mpy files a board runs in place from flash.

    python -m tools.romfs [--src build/mpy] [--out build/bdmeter.romfs]

The image holds firmware/ and lib/ exactly as build/mpy has them; MicroPython mounts a board's ROMFS
partition at /rom and appends /rom and /rom/lib to sys.path, so `from firmware import app` and
`import dlt645` resolve there. boot.py and main.py stay on the writable filesystem: MicroPython runs them
from there, not from /rom. The format is written by mpremote's own image writer (mpremote.romfs).
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "build" / "mpy"
OUT = ROOT / "build" / "bdmeter.romfs"
TREES = ("firmware", "lib")  # what goes into the image; everything else of build/mpy stays on the filesystem
MAGIC = b"\xd2\xcd\x31"


def _writer():
    try:
        from mpremote.romfs import VfsRomWriter
    except ImportError:
        sys.exit("romfs: mpremote with ROMFS support (1.25 or later) is not installed; run `make venv`")
    return VfsRomWriter()


def _add(writer, directory, files):
    for path in sorted(directory.iterdir()):
        if path.is_dir():
            writer.opendir(path.name)
            _add(writer, path, files)
            writer.closedir()
        elif path.suffix == ".mpy":
            writer.mkfile(path.name, path.read_bytes())
            files.append(path)


def build(src=SRC, out=OUT):
    """Write the image of src's firmware/ and lib/ trees to out; return (image size in bytes, files packed)."""
    src, out = Path(src), Path(out)
    missing = [t for t in TREES if not (src / t).is_dir()]
    if missing:
        sys.exit("romfs: %s has no %s; run `make mpy` first" % (shown_path(src), " or ".join(missing)))
    writer, files = _writer(), []
    for tree in TREES:
        writer.opendir(tree)
        _add(writer, src / tree, files)
        writer.closedir()
    image = writer.finalise()
    if not image.startswith(MAGIC):
        sys.exit("romfs: the writer produced no ROMFS image (magic %r)" % image[:3])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(image)
    tmp.replace(out)
    return len(image), len(files)


def shown_path(path):
    path = Path(path)
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(SRC), help="compiled tree (default: build/mpy)")
    ap.add_argument("--out", default=str(OUT), help="image file (default: build/bdmeter.romfs)")
    args = ap.parse_args(argv)
    size, count = build(args.src, args.out)
    print("romfs: %d .mpy files, image %d bytes (%.1f KB) in %s; boot.py and main.py stay on the filesystem"
          % (count, size, size / 1024, shown_path(args.out)))


if __name__ == "__main__":
    main()
