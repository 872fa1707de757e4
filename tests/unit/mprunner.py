"""Runs the portable unit tests of one module under the MicroPython unix port.

    micropython tests/unit/mprunner.py test_dlt645

Imports the module with lib/, the repository root and tests/unit on sys.path,
calls every top-level `test_*` function, and prints one line per test:
`PASS name` or `FAIL name` followed by the traceback, then a closing
`N passed, N failed` line. pytest (tests/conftest.py) reads these lines.
"""

import sys

_here = __file__.rpartition("/")[0] or "."
_root = _here + "/../.."
for _p in (_root + "/lib", _root + "/build/lib", _root, _here):
    sys.path.insert(0, _p)


def main(name):
    mod = __import__(name)
    passed = failed = 0
    for attr in sorted(dir(mod)):
        fn = getattr(mod, attr)
        if not attr.startswith("test_") or not callable(fn):
            continue
        try:
            fn()
        except Exception as e:  # report every failure, keep going
            failed += 1
            print("FAIL", attr)
            sys.print_exception(e, sys.stdout)
        else:
            passed += 1
            print("PASS", attr)
    print("%d passed, %d failed" % (passed, failed))
    return failed


sys.exit(1 if main(sys.argv[1]) else 0)
