"""Type-check firmware/ and lib/ against the ESP32 and RP2 ports' stubs, so a call the port lacks fails the build.

    python -m tools.typecheck [--install [--no-check]] [--root DIR] [--port esp32|rp2 ...]

Each port's stubs (pinned in requirements-stubs.txt) are installed once into build/typings/<port>/ with
--install (what `make typings` does); the check itself is offline. mypy then reads MicroPython's own
`machine`, `time`, `os`, `vfs` and its reduced stdlib (`asyncio` with sleep_ms and wait_for_ms, `sys`...) in
place of CPython's, and checks the bodies of the unannotated functions too. A failure is printed as
`path:line: error: ...` and exits 1.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TYPINGS = ROOT / "build" / "typings"
PINS = ROOT / "requirements-stubs.txt"

# What a port offers is checked by these codes, which stay on: unknown attributes and names (attr-defined,
# name-defined), unknown keywords or too many arguments (call-arg, call-overload), wrong argument types
# (arg-type), missing modules (import-not-found). Off: inference noise about the project's own untyped code,
# which says nothing about the port (a list built empty then filled, a tuple re-bound to a shorter one, the
# CPython fallback beside a MicroPython built-in, arithmetic on the stubs' opaque ticks type).
_NOISE = "assignment,misc,var-annotated,operator,union-attr,str-bytes-safe,no-redef,has-type,index,return-value"

_CONFIG = """[mypy]
python_version = 3.11
mypy_path = {typings}:{lib}:{fetched}
custom_typeshed_dir = {typings}
check_untyped_defs = True
namespace_packages = True
explicit_package_bases = True
disable_error_code = {noise}
show_error_codes = True
no_error_summary = False

# the stubs' own flaws (math.inf/nan undefined, machine/vfs overload clashes): not ours to check
[mypy-machine,vfs,math,_mpy_shed.*,stdlib.*]
ignore_errors = True

# third-party packages fetched by `make deps`, read for their names only
[mypy-umqtt.*,logging.*]
ignore_errors = True

# unix-port only: a TCP connection standing in for a UART (select.poll, socket options of the unix port)
[mypy-tcpuart]
ignore_errors = True

# the one place for CPython stand-ins: its fallback branch names CPython's time.monotonic
[mypy-mpcompat]
disable_error_code = attr-defined

# min(key=dict.get): typeshed overloads, not a call into the port
[mypy-firmware.auth]
disable_error_code = arg-type
"""


def ports():
    """{port: [pip requirement, ...]} from requirements-stubs.txt."""
    out = {}
    for line in PINS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            port, _, reqs = line.partition(":")
            out[port.strip()] = reqs.split()
    return out


def _stamp(port):
    return TYPINGS / port / ".pins"


def install(port, reqs):
    """Install the port's pinned stubs into build/typings/<port>/ unless that exact set is already there."""
    want = " ".join(reqs) + "\n"
    if _stamp(port).exists() and _stamp(port).read_text() == want:
        return
    dest = TYPINGS / port
    shutil.rmtree(dest, ignore_errors=True)
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                        "--target", str(dest)] + reqs, capture_output=True, text=True)
    if p.returncode:
        sys.exit("typecheck: pip could not install %s stubs (%s): %s"
                 % (port, " ".join(reqs), (p.stderr.strip().splitlines() or ["?"])[-1]))
    # the terminal runs its own pinned umqtt.simple (build/lib, fetched by `make deps`) and swaps that module's
    # `socket` global; the stubs' public-API-only copy would hide the real module from the check
    shutil.rmtree(dest / "umqtt", ignore_errors=True)
    _stamp(port).write_text(want)
    print("typecheck: installed %s stubs into %s" % (port, dest.relative_to(ROOT)))


def check(port, root=ROOT):
    """Run mypy over root/firmware and root/lib against the port's stubs: (exit code, output)."""
    typings = TYPINGS / port
    if not _stamp(port).exists():
        return 2, "typecheck: no %s stubs in %s: run `make typings`" % (port, typings.relative_to(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "mypy.ini"
        cfg.write_text(_CONFIG.format(typings=typings, lib=Path(root) / "lib", fetched=ROOT / "build" / "lib",
                                      noise=_NOISE))
        argv = [sys.executable, "-m", "mypy", "--config-file", str(cfg),
                "--cache-dir", str(ROOT / "build" / "mypy_cache" / port), "firmware", "lib"]
        p = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300)
    return p.returncode, (p.stdout + p.stderr).strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--install", action="store_true", help="install the pinned stubs first (needs PyPI once)")
    ap.add_argument("--no-check", action="store_true", help="only install the stubs")
    ap.add_argument("--root", default=str(ROOT), help="tree holding firmware/ and lib/ (default: this checkout)")
    ap.add_argument("--port", action="append", help="esp32 or rp2 (default: both)")
    args = ap.parse_args(argv)
    pins = ports()
    chosen = args.port or sorted(pins)
    failed = []
    for port in chosen:
        if port not in pins:
            sys.exit("typecheck: unknown port %r (known: %s)" % (port, ", ".join(sorted(pins))))
        if args.install:
            install(port, pins[port])
        if args.no_check:
            continue
        code, out = check(port, args.root)
        print("typecheck %s: %s" % (port, out.splitlines()[-1] if out else "no output"), flush=True)
        if code:
            failed.append(port)
            print("\n".join(out.splitlines()[:-1]), flush=True)
    if failed:
        sys.exit("typecheck: calls the %s port(s) do not have (see above)" % ", ".join(failed))


if __name__ == "__main__":
    main()
