"""The ROMFS image of build/mpy mounts under the unix port (vfs.VfsRom) and the whole firmware imports from it."""

import json

import pytest

from harness import ROOT, run_micropython
from tools import romfs

pytestmark = pytest.mark.port

# Nothing but the image on sys.path: the working directory holds no code, and build/mpy is not reachable.
_SCRIPT = """
import gc, json, sys, vfs
f = open(sys.argv[1], "rb")
image = f.read()
f.close()
vfs.mount(vfs.VfsRom(image), "/rom")
sys.path[:] = [".frozen", "/rom", "/rom/lib"]  # as on a board: frozen modules (asyncio), then the ROMFS
from firmware import app
import umqtt.simple, logging, dlt645_master, quectel
gc.collect()
files = {}
for name, mod in sys.modules.items():
    files[name] = getattr(mod, "__file__", None)
print(json.dumps({"files": files, "app_main": callable(app.main), "rom": sorted(__import__("os").listdir("/rom"))}))
"""


def test_firmware_imports_from_the_romfs_image(tmp_path):
    image = tmp_path / "bdmeter.romfs"
    size, count = romfs.build(ROOT / "build" / "mpy", image)
    assert image.read_bytes()[:3] == romfs.MAGIC and size == image.stat().st_size
    script = tmp_path / "romfs_import.py"
    script.write_text(_SCRIPT)
    rc, out = run_micropython(script, image, cwd=tmp_path, timeout=60)
    assert rc == 0, out[-3000:]
    got = json.loads(out.strip().splitlines()[-1])
    assert got["rom"] == ["firmware", "lib"] and got["app_main"]
    files = {k: v for k, v in got["files"].items() if v}
    assert files["firmware.app"] == "/rom/firmware/app.mpy"
    assert files["umqtt.simple"] == "/rom/lib/umqtt/simple.mpy"
    assert files["dlt645_master"] == "/rom/lib/dlt645_master.mpy"
    # every module the firmware pulled in came from the image or is frozen in the port, none from a filesystem
    ours = {k: f for k, f in files.items() if not k.startswith("asyncio")}
    assert all(f.startswith("/rom/") for f in ours.values()), files
    # app's imports reach (nearly) every packed module; the self-test and the signed update's modules are loaded
    # only when used (an installer's REPL call; an update offered or cut short), and TLS's only with broker_tls
    lazy = ("firmware.selftest", "firmware.update", "firmware.slots", "firmware.staging", "ed25519", "sha512",
            "firmware.tls", "quectel_ssl", "quectel_files")
    assert len(ours) >= count - len(lazy) - 3, sorted(ours)


def test_image_holds_only_the_compiled_trees(tmp_path):
    size, count = romfs.build(ROOT / "build" / "mpy", tmp_path / "x.romfs")
    mpy = [p for t in romfs.TREES for p in (ROOT / "build" / "mpy" / t).rglob("*.mpy")]
    assert count == len(mpy)
    # the image is the bytecode plus a few bytes of names and lengths per entry
    assert sum(p.stat().st_size for p in mpy) < size < sum(p.stat().st_size for p in mpy) + 64 * (count + 8)


def test_missing_build_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit) as e:
        romfs.build(tmp_path / "nothing", tmp_path / "x.romfs")
    assert "make mpy" in str(e.value)
