"""Helpers for unit tests that must run unchanged under CPython (pytest) and MicroPython."""


def raises(exc, fn, *args, **kwargs):
    """Call fn and return the exception of type `exc` it raised; fail if it raised none."""
    try:
        fn(*args, **kwargs)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %s" % (getattr(exc, "__name__", exc), getattr(fn, "__name__", fn)))


def near(a, b, eps=1e-9):
    return abs(a - b) <= eps


class FixedClock:
    """A terminal clock standing still at `t` (UTC seconds), set from `source`, running `scale` times real time."""

    def __init__(self, t, source="gnss", scale=1):
        self.t, self.source, self.scale = t, source, scale

    def now(self):
        return self.t

    def stamp(self):
        return self.t, self.source

    def uptime_s(self):
        return 0


def rmtree(path):
    import os

    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        p = path + "/" + name
        try:
            os.remove(p)
        except OSError:
            rmtree(p)
    os.rmdir(path)


def scratch(name):
    """A fresh, empty directory under build/scratch for a test that writes files (same on both runtimes)."""
    import os

    base = "build/scratch"
    for p in ("build", base):
        try:
            os.mkdir(p)
        except OSError:
            pass
    path = "%s/%s-%d" % (base, name, os.getpid() if hasattr(os, "getpid") else 0)
    rmtree(path)
    os.mkdir(path)
    return path
