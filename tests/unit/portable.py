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
