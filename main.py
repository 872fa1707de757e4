"""bdmeter entry point: `micropython main.py [config.json]` on the unix port;
on a board, MicroPython runs it after boot.py and the config comes from flash.

It picks the code to run: the factory install beside this file, or an update staged in
/app_a or /app_b (firmware/slots: a new version gets one trial boot; if it crashes while
loading, the previous version is loaded instead). This file and boot.py are never updated.
"""

import gc
import sys

# While the code loads, collect after every 4 KB allocated instead of only when the heap is full: the
# loader's garbage is reclaimed before the next module is placed above it, so the code packs tighter. On the
# 64-bit unix port the smallest heap that loads it drops by about 16 KB (179 -> 163 KB). Once running,
# collecting that often would triple the CPU per poll cycle for no measurable gain, so it stops.
gc.threshold(4096)

_ROOT = __file__.rpartition("/")[0]  # "" on a board (main.py at /): the slots are /app_a, /app_b
_SYS_PATH = list(sys.path)


def _use(paths):
    # Only the chosen slot's tree: a module missing there must fail, not load from another version.
    base = ("", _ROOT or "/", _ROOT + "/lib", _ROOT + "/build/lib")  # a board's default path has /lib
    sys.path[:] = paths + [p for p in _SYS_PATH if p not in base]


def _purge():
    # Forget every module loaded from flash, so the next import reads the other slot's files.
    for name in list(sys.modules):
        f = getattr(sys.modules[name], "__file__", None)
        if f and (f.startswith(_ROOT) or name == "firmware" or name.startswith("firmware.")):
            del sys.modules[name]
    gc.collect()


def _run(cfg):
    _use([_ROOT + "/lib", _ROOT + "/build/lib", _ROOT or "/"])
    from firmware import VERSION  # the factory install's version
    from firmware import slots  # the factory install's: every version reads the same state file

    failed = 0
    while failed < 3:  # a trial that fails to load is rolled back by the next selection: never 3 in a row
        try:
            slot, _ = slots.boot(_ROOT, VERSION)
        except (OSError, ValueError) as e:
            print("slot state unusable (%s): factory install" % (e,))
            slot = slots.BASE
        _purge()
        _use(slots.slot_path(_ROOT, slot))
        try:
            from firmware import app
        except Exception as e:  # noqa: BLE001 - any failure to load a trial version means roll back
            _purge()
            if slots.read(_ROOT).get("trial") != slot:
                raise  # the confirmed version itself does not load: nothing older to go back to
            sys.print_exception(e)
            slots.fail(_ROOT, "import: %s: %s" % (type(e).__name__, e))
            try:
                import machine

                machine.reset()  # the next boot rolls back
            except (ImportError, AttributeError):
                pass  # the unix port: select again in-process
            failed += 1
            continue
        failed = 0
        gc.threshold(-1)  # loaded: collect only when an allocation needs it
        try:
            if app.main(cfg, _ROOT, slot) != "reselect":
                return
        except KeyboardInterrupt:
            # A second Ctrl-C (a terminal signals the whole process group, then an impatient user) can land
            # after app.main has stopped the terminal: it is stopped all the same, so end quietly with status 0.
            return
        gc.threshold(4096)
        _purge()
    sys.exit("no slot loads")


_run(sys.argv[1] if len(sys.argv) > 1 else None)
