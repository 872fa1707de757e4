"""Plausibility of energy readings: a register that goes down, or grows faster than the meter's maximum power allows.

Such a reading is not published: the caller sends a `meter_anomaly` event with both values instead.
The last published reading of each meter is the reference (in RAM: after a reset the first reading
is the new reference). A meter clear (seen in its event log) resets the reference, since registers
restart from zero then. After an anomaly the new value becomes the reference: a meter that was
swapped, or whose registers jumped once, is reported once and then read normally.
"""

_CHECKED = ("fwd", "rev")  # cumulative registers that only grow
_SLACK = 1.1  # 10 % over the maximum power, and 2 counts (0.02 kWh) of register resolution
_COUNTS = 2


def _centi(f):
    """A Fixed in hundredths (energy registers are XXXXXX.XX: places 2)."""
    p = f.places
    return f.n * 10 ** (2 - p) if p <= 2 else f.n // 10 ** (p - 2)


class Plausibility:
    """The last accepted energy reading of each meter, and the check of the next one against it."""


    def __init__(self, max_kw):
        self.max_kw = max_kw
        self.anomalies = 0
        self._last = {}  # address -> (clock seconds, {key: Fixed})

    def forget(self, addr):
        """Drop the reference of `addr` (its registers were cleared)."""
        self._last.pop(addr, None)

    def check(self, addr, now, kwh):
        """None if the reading is plausible (it becomes the reference), else the anomaly's data."""
        prev = self._last.get(addr)
        self._last[addr] = (now, kwh)
        if prev is None:
            return None
        then, old = prev
        dt = max(0, now - then)
        for key in _CHECKED:
            a, b = old.get(key), kwh.get(key)
            if a is None or b is None:
                continue
            da, db = _centi(a), _centi(b)
            limit = int(self.max_kw * dt * 100 * _SLACK / 3600) + _COUNTS
            why = "decreased" if db < da else ("too_fast" if db - da > limit else None)
            if why:
                self.anomalies += 1
                return {"meter": addr, "reg": key, "why": why, "prev": a, "now": b, "dt_s": dt,
                        "max_kw": self.max_kw}
        return None
