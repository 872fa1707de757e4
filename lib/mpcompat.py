"""The few MicroPython built-ins that portable modules use, with CPython stand-ins: one place for the differences."""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:
    from time import ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython: same semantics, 30-bit wrap included
    import time as _time

    _PERIOD = 1 << 30

    def ticks_ms():
        return int(_time.monotonic() * 1000) & (_PERIOD - 1)

    def ticks_diff(a, b):
        return ((a - b + _PERIOD // 2) & (_PERIOD - 1)) - _PERIOD // 2

    def ticks_add(a, delta):
        return (a + delta) & (_PERIOD - 1)
