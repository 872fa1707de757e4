"""Put the terminal on a board with mpremote: a ROMFS image where the firmware has a partition, else .mpy files.

    python -m tools.deploy --port /dev/ttyACM0 --config terminal.json [--route auto|romfs|mpy] [--dry-run]

Order: the board must be there, the configuration must pass `python -m tools.checkconfig`, then the board
is asked (one `mpremote exec`) for its MicroPython version, ROMFS partition 0 and whether the firmware is
frozen into its MicroPython image (then only boot.py, main.py and the config are copied). With a partition big
enough, the image of build/mpy (tools/romfs.py) goes there and its .mpy files run in place from flash;
otherwise the .mpy files are copied to the filesystem, whose code then loads into RAM, and deploy says so.
Either way main.py and the old firmware/ and lib/ trees are removed from the filesystem first (a stale
module there would shadow the image, or outlive its source; without main.py a watchdog reset during the
deploy leaves the board idle), the certificate files of a TLS config (`broker_tls`: tls_ca, and tls_cert and
tls_key when set; taken from next to the config, tools/checkconfig.tls_files) go where the config names them, the
config is copied (as config.json), boot.py and main.py last, and the board is reset. The state directory is
never touched. --dry-run prints the mpremote commands instead of running them, and asks nothing of the board.
"""

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

from tools import romfs

ROOT = Path(__file__).resolve().parent.parent
MPY = ROOT / "build" / "mpy"
MIN_VERSION = (1, 23, 0)  # .mpy version 6, what mpy-cross 1.29 writes
CHECKCONFIG = [sys.executable, "-m", "tools.checkconfig"]

# Runs on the board: its MicroPython version, platform, number of ROMFS partitions (-1: firmware built without
# ROMFS, -2: no vfs module at all), the size of partition 0, and whether the firmware package is frozen into
# the MicroPython image (imported with nothing but .frozen on the path), as one line.
PROBE = """import sys
saved, loaded = sys.path[:], sys.modules.pop("firmware", None)  # the interrupted terminal's copy must not answer
sys.path[:] = [".frozen"]
try:
    import firmware
    frozen = 1
except ImportError:
    frozen = 0
sys.path[:] = saved
sys.modules.pop("firmware", None)
if loaded is not None:
    sys.modules["firmware"] = loaded
try:
    import vfs
    n = vfs.rom_ioctl(1) if hasattr(vfs, "rom_ioctl") else -1
except ImportError:
    n = -2
size = 0
if n > 0:
    d = vfs.rom_ioctl(2, 0)
    size = d.ioctl(4, 0) * d.ioctl(5, 0) if hasattr(d, "ioctl") else len(d)
v = sys.implementation.version
print("BDPROBE %d.%d.%d %s %d %d %d" % (v[0], v[1], v[2], sys.platform, n, size, frozen))
"""

# Runs on the board first: removes main.py, so that a reset during the deploy (the interrupted terminal's hardware
# watchdog keeps running and cannot be stopped) lands in an idle REPL rather than in a half-deployed terminal, and
# the firmware/ and lib/ trees a previous deploy left on the filesystem. main.py is copied back last.
CLEAN = """import os
def rm(p):
    try:
        mode = os.stat(p)[0]
    except OSError:
        return
    if mode & 0x4000:
        for name in os.listdir(p):
            rm(p + "/" + name)
        os.rmdir(p)
    else:
        os.remove(p)
for p in ("main.py", "firmware", "lib"):
    rm(p)
"""


class Refused(Exception):
    """Deploy stops before writing anything to the board; the message says why, in one line."""


def mpremote():
    exe = Path(sys.executable).parent / "mpremote"
    return str(exe) if exe.exists() else "mpremote"


def check_board(port):
    if not os.path.exists(port):
        raise Refused("no board at %s: connect one, or name its port: make deploy PORT=/dev/ttyACM0" % port)


def checker_available():
    return importlib.util.find_spec("tools.checkconfig") is not None


def check_config(path):
    """Refuse a missing or invalid configuration, printing each problem tools.checkconfig names (secrets masked)."""
    if not path:
        raise Refused("no configuration given: make deploy CONFIG=terminal.json")
    if CHECKCONFIG[1:3] == ["-m", "tools.checkconfig"] and not checker_available():
        raise Refused("tools/checkconfig.py is not in this tree, so %s cannot be checked: refusing to deploy "
                      "an unchecked configuration" % path)
    p = subprocess.run(CHECKCONFIG + [str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if not p.returncode:
        print("deploy: config %s" % (p.stdout.strip().splitlines() or ["checked"])[-1])
        return
    if p.returncode:
        for line in (p.stdout + p.stderr).strip().splitlines():
            print("  " + line)
        raise Refused("%s has problems (above): nothing was written to the board" % path)


def cert_copies(path):
    """[(host file, board file)] of the certificate files a TLS config needs on the board (none without
    broker_tls); the config has passed tools.checkconfig, which checked each file is readable PEM."""
    import json

    from firmware import config as fwconfig
    from tools import checkconfig

    with open(path, "rb") as f:
        cfg, _ = fwconfig.resolve(json.loads(f.read().decode("utf-8")))
    return [(host, name) for _, name, host in checkconfig.tls_files(str(path), cfg)]


def parse_probe(text):
    """The board's answer to PROBE: (version tuple, platform, ROMFS partitions, partition 0 bytes, frozen)."""
    for line in text.splitlines():
        if line.startswith("BDPROBE "):
            _, ver, platform, n, size, frozen = line.split()
            return tuple(int(x) for x in ver.split(".")), platform, int(n), int(size), frozen == "1"
    raise Refused("the board did not answer the probe (is MicroPython running on it?): %s"
                  % (text.strip().splitlines() or ["no output"])[-1])


def choose_route(probe, image_size):
    """('frozen', 'romfs' or 'mpy', why) for a probed board; Refused when its MicroPython is too old for .mpy files."""
    version, platform, n, size, frozen = probe
    shown = "MicroPython %s on %s" % (".".join(map(str, version)), platform)
    if frozen:
        # a copy on the filesystem would shadow the frozen package: the current directory precedes .frozen
        return "frozen", "%s has the firmware frozen in: only boot.py, main.py and the config are copied" % shown
    if version < MIN_VERSION:
        raise Refused("%s: the .mpy files need %s or later; flash a newer MicroPython first"
                      % (shown, ".".join(map(str, MIN_VERSION))))
    if version < (1, 25, 0) or n < 0:
        why = "has no ROMFS support (added in 1.25; stock esp32/rp2 builds leave it out)"
    elif n == 0:
        why = "has no ROMFS partition"
    elif size < image_size:
        why = "has a ROMFS partition of %d bytes, the image needs %d" % (size, image_size)
    else:
        return "romfs", "%s: ROMFS partition 0 holds %d bytes, image %d bytes" % (shown, size, image_size)
    return "mpy", ("%s %s: copying .mpy files to its filesystem instead; their code then loads into RAM "
                   "(docs/DEPLOY.md: a ROMFS-enabled or frozen firmware keeps it in flash)" % (shown, why))


def plan(route, port, config, image, certs=()):
    """The mpremote commands (argv lists) that put the terminal on the board by `route`; `certs` are the
    (host file, board file) pairs of cert_copies, copied before the config that names them."""
    mp = [mpremote(), "connect", port]
    steps = [mp + ["exec", CLEAN]]
    if route == "romfs":
        steps.append(mp + ["romfs", "-p", "0", "deploy", str(image)])
    if route == "mpy":  # (frozen: the code is in the firmware image already)
        steps.append(mp + ["fs", "cp", "-r", str(MPY / "lib"), str(MPY / "firmware"), ":"])
    for host, name in certs:
        steps.append(mp + ["fs", "cp", str(host), ":" + name])
    steps.append(mp + ["fs", "cp", str(config), ":config.json"])
    steps.append(mp + ["fs", "cp", str(MPY / "boot.py"), str(MPY / "main.py"), ":"])  # last: the terminal is whole
    steps.append(mp + ["reset"])
    return steps


def shown(argv):
    return " ".join(shlex.quote(str(a)) for a in argv)


def probe_board(port):
    p = subprocess.run([mpremote(), "connect", port, "exec", PROBE], capture_output=True, text=True, timeout=60)
    return parse_probe(p.stdout + p.stderr)


def run_steps(steps):
    for argv in steps:
        print("$ " + shown(argv).splitlines()[0] + (" ..." if "\n" in shown(argv) else ""), flush=True)
        p = subprocess.run(argv, timeout=600)
        if p.returncode:
            raise Refused("mpremote failed (exit %d) at: %s; the board may be half-deployed, run deploy again"
                          % (p.returncode, shown(argv[3:5])))


def deploy(port, config, route="auto", dry_run=False, image=romfs.OUT):
    if not dry_run:
        check_board(port)
    check_config(config)
    certs = cert_copies(config)
    for _, name in certs:
        print("deploy: TLS file %s goes to the board with the config" % name)
    size, count = romfs.build(MPY, image)
    print("deploy: ROMFS image %d bytes (%d .mpy files) in %s" % (size, count, romfs.shown_path(image)))
    if dry_run:
        print("deploy: dry run; the board would be asked first:\n%s" % shown([mpremote(), "connect", port, "exec",
                                                                               PROBE]))
        routes = ["frozen", "romfs", "mpy"] if route == "auto" else [route]
        for r in routes:
            label = {"frozen": "on a firmware with the code frozen in",
                     "romfs": "with a ROMFS partition of at least %d bytes" % size,
                     "mpy": "without either (the .mpy fallback)"}[r]
            print("deploy: %s route, %s:" % (r, label))
            for argv in plan(r, port, config, image, certs):
                print(shown(argv))
        return
    if route == "auto":
        route, why = choose_route(probe_board(port), size)
        print("deploy: " + why, flush=True)
    run_steps(plan(route, port, config, image, certs))
    print("deploy: done (%s); watch it start: %s connect %s repl" % (route, mpremote(), port))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", default="/dev/ttyUSB0", help="the board's serial port")
    ap.add_argument("--config", help="the terminal's configuration, copied as config.json (required)")
    ap.add_argument("--route", choices=("auto", "frozen", "romfs", "mpy"), default="auto",
                    help="auto (default): nothing if frozen in, ROMFS if the board has a partition big enough, "
                         "else .mpy files")
    ap.add_argument("--dry-run", action="store_true", help="print the mpremote commands, touch nothing")
    args = ap.parse_args(argv)
    try:
        deploy(args.port, args.config, args.route, args.dry_run)
    except Refused as e:
        sys.exit("deploy: %s" % e)


if __name__ == "__main__":
    main()
