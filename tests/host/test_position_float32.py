"""The position average on a board's 32-bit floats: every arithmetic step rounded to float32, as on an MCU.

A mean kept in degrees stops moving once (fix - mean) / n is below half a float32 step (0.4 m of latitude
near 40 degrees): after a restart with a full average it could never be refined again. The average kept as
an offset from an anchor has no such floor.
"""

import random
import struct

from firmware.position import Position, distance_m


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


class F32(float):
    """A float whose every +, -, *, / result is rounded to float32, like MicroPython's floats on an MCU."""

    def __new__(cls, x):
        return float.__new__(cls, _f32(float(x)))

    def _op(fn):
        return lambda a, b: F32(fn(float(a), float(b)))

    __add__ = _op(lambda a, b: a + b)
    __radd__ = _op(lambda a, b: b + a)
    __sub__ = _op(lambda a, b: a - b)
    __rsub__ = _op(lambda a, b: b - a)
    __mul__ = _op(lambda a, b: a * b)
    __rmul__ = _op(lambda a, b: b * a)
    __truediv__ = _op(lambda a, b: a / b)
    __rtruediv__ = _op(lambda a, b: b / a)
    __neg__ = lambda a: F32(-float(a))  # noqa: E731


TRUE = (40.842512, 111.749023)  # where the terminal really is
M_PER_DEG_LAT = 111_195.0


def _fixes(n, sigma_m=3.0, seed=5):
    rng = random.Random(seed)
    s = sigma_m / M_PER_DEG_LAT
    for _ in range(n):
        yield F32(TRUE[0] + rng.gauss(0, s)), F32(TRUE[1] + rng.gauss(0, s * 1.32))


def _error_m(p):
    return distance_m(float(p.lat), float(p.lon), TRUE[0], TRUE[1])


def test_emulation_really_is_float32():
    x = F32(40.842512)
    assert x + F32(1e-7) == x  # below half a step at 40 degrees: lost
    assert isinstance(x / 3, F32)


def test_a_restored_full_average_20_m_off_is_still_refined_by_new_fixes():
    p = Position(relocation_m=200)
    off = 20 / M_PER_DEG_LAT
    p.restore({"lat": F32(TRUE[0] + off), "lon": F32(TRUE[1]), "n": 1000})
    assert 19 < _error_m(p) < 21
    for lat, lon in _fixes(3000):
        assert p.add(lat, lon) is None
    # exact arithmetic would leave 20 m * (999/1000)**3000 = 1.0 m of the old error, plus noise; a mean kept
    # in float32 degrees stays 20 m off for ever (every step is below half an ulp)
    assert _error_m(p) < 2.0, _error_m(p)


def test_averaging_from_scratch_beats_a_single_fix():
    p = Position(relocation_m=200)
    for lat, lon in _fixes(2000, seed=9):
        p.add(lat, lon)
    # the mean of 1000+ fixes with 3 m noise is within centimetres; what is left is the final float32 rounding
    # of anchor + offset (half a step: 0.2 m of latitude, 0.3 m of longitude here)
    assert _error_m(p) < 0.5, _error_m(p)


def test_a_move_is_still_detected_and_placed_well_in_float32():
    p = Position(relocation_m=200)
    for lat, lon in _fixes(50):
        p.add(lat, lon)
    moved = None
    for lat, lon in _fixes(3, seed=11):
        moved = p.add(F32(lat + 0.01), lon) or moved  # 1.1 km north
    assert moved is not None
    assert 1000 < moved[2] < 1250
