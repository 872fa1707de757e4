"""The energy of one meter in a period: its register interpolated linearly in time at both ends, in exact hundredths.

Definition (docs/HEADEND.md "Reports"). A meter's dated readings (`tsrc` not `none`, `fwd` present), in
order of time (ties in order of arrival), define its consumption curve C(t): C rises between two
consecutive readings by the register's increase (a register that went down, a replaced meter, adds 0
and is noted), linearly in time; before the first reading C is held at the first reading's value, after
the last at the last's. The register at a period boundary t is C interpolated from the readings either
side of t and rounded to hundredths of a kWh (half to even). The energy of [a, b] is C(b) - C(a).

Because C(t) depends on t alone, consecutive periods add up exactly: E(a, m) + E(m, b) = E(a, b), for
every meter and therefore for every sum of meters. All arithmetic is on integers (hundredths) and
fractions; the result is a Decimal with two places.
"""

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

_DATED = "meter = ? AND tsrc != 'none' AND fwd IS NOT NULL AND ts IS NOT NULL"


def hundredths(kwh):
    """A register value (float from the store) as an integer number of hundredths of a kWh."""
    return int(Decimal(repr(float(kwh))).scaleb(2).to_integral_value(ROUND_HALF_EVEN))


def kwh(n):
    """Hundredths (int) to a Decimal kWh with two places."""
    return Decimal(n).scaleb(-2)


def window(store, meter, t_from, t_to):
    """(ts, hundredths) of the readings that decide [t_from, t_to]: the last at or before t_from, every one
    after it up to t_to, and the first after t_to; in order."""
    cols = "SELECT ts, fwd FROM readings WHERE " + _DATED
    before = store.query(cols + " AND ts <= ? ORDER BY ts DESC, rowid DESC LIMIT 1", (meter, t_from))
    inside = store.query(cols + " AND ts > ? AND ts <= ? ORDER BY ts, rowid", (meter, t_from, t_to))
    after = store.query(cols + " AND ts > ? ORDER BY ts, rowid LIMIT 1", (meter, t_to))
    return [(r["ts"], hundredths(r["fwd"])) for r in before + inside + after]


class Curve:
    """C(t) over a window of readings: cumulative increase (never negative steps), linear between readings."""

    def __init__(self, pts):
        self.ts = [t for t, _ in pts]
        self.reg = [h for _, h in pts]
        self.cum = [0]
        self.resets = []
        for k in range(1, len(pts)):
            step = self.reg[k] - self.reg[k - 1]
            if step < 0:
                self.resets.append({"ts": self.ts[k], "from": kwh(self.reg[k - 1]), "to": kwh(self.reg[k])})
            self.cum.append(self.cum[-1] + max(0, step))

    def _last_at_or_before(self, t):
        k = None
        for i, ts in enumerate(self.ts):
            if ts <= t:
                k = i
            else:
                break
        return k

    def at(self, t):
        """(C(t) in hundredths, the register at t in hundredths, how: 'interpolated'/'reading'/'held')."""
        k = self._last_at_or_before(t)
        if k is None:  # before the first reading: held at it
            return self.cum[0], self.reg[0], "held"
        if k + 1 >= len(self.ts):  # at or after the last reading: held at it
            return self.cum[k], self.reg[k], "reading" if self.ts[k] == t else "held"
        rise = self.cum[k + 1] - self.cum[k]
        part = round(Fraction(rise * (t - self.ts[k]), self.ts[k + 1] - self.ts[k]))
        return self.cum[k] + part, self.reg[k] + part, "reading" if t == self.ts[k] else "interpolated"


def meter_energy(store, meter, t_from, t_to):
    """The meter's energy in [t_from, t_to] as a dict, or (None, why) when it has nothing in the period."""
    pts = window(store, meter, t_from, t_to)
    if not pts:
        return None, "no dated reading"
    if pts[0][0] > t_to:
        return None, "no reading before the end of the period"
    if pts[-1][0] <= t_from:
        return None, "no reading after the start of the period"
    curve = Curve(pts)
    c_from, reg_from, how_from = curve.at(t_from)
    c_to, reg_to, how_to = curve.at(t_to)
    return {"kwh": kwh(c_to - c_from), "fwd_from": kwh(reg_from), "fwd_to": kwh(reg_to), "how_from": how_from,
            "how_to": how_to, "readings": sum(1 for t in curve.ts if t_from < t <= t_to),
            "resets": curve.resets}, None
