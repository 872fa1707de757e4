"""Where the terminal stands: fix acceptance policy, averaging while still, relocation detection.

The NMEA parser reports what the receiver said; whether a fix is good enough
is decided here. Accepted fixes are averaged (a running mean) while they stay
within the relocation threshold of the average; once enough fixes in a row lie
beyond it, the terminal has been moved: the average restarts there and a
relocation is reported.

Boards have 32-bit floats: near 40 degrees one step of a float32 latitude is
0.4 m (0.7 m of longitude at 111 degrees). A mean kept in degrees would stop
moving once (fix - mean) / n falls below half a step: after a restart with a
full average (n = 1000) no fix within ~200 m could ever move it. So the mean is
kept as an offset from an anchor (the first fix at this place): offsets are
small numbers with full float32 precision, and anchor + offset is rounded once,
when read, never accumulated.
"""

import math

_R_EARTH_M = 6371008.8
_MOVE_CONFIRM = 3  # consecutive far fixes that confirm a move (one outlier is not a move)
_MAX_AVG = 1000  # cap on fixes in the mean, so old ones keep some weight but it stays adaptive


def distance_m(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres (haversine)."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _R_EARTH_M * math.asin(min(1.0, math.sqrt(a)))


def acceptable(fix, nsat, hdop, min_sats=4, hdop_max=5.0):
    """The fix policy: a real 2D/3D fix, enough satellites, a sane HDOP (early fake fixes report 0.00)."""
    return bool(fix) and nsat is not None and nsat >= min_sats and hdop is not None and 0 < hdop <= hdop_max


class Position:
    """Running average of accepted fixes with relocation detection."""

    def __init__(self, relocation_m=200.0):
        self.relocation_m = relocation_m
        self.alt = None
        self.n = 0
        self._lat0 = self._lon0 = None  # the anchor
        self._dlat = self._dlon = 0.0  # running mean of (fix - anchor), degrees
        self.hdop = None
        self.nsat = None
        self._far = 0
        self._far_sum = None

    @property
    def known(self):
        return self.n > 0

    @property
    def lat(self):
        return None if self._lat0 is None else self._lat0 + self._dlat  # rounded here once, never accumulated

    @property
    def lon(self):
        return None if self._lon0 is None else self._lon0 + self._dlon

    def restore(self, saved):
        """Start from a position saved on flash (dict as from `as_dict`), so a reboot does not look like a move."""
        if saved and saved.get("lat") is not None:
            self._reset(saved["lat"], saved["lon"], saved.get("alt"))
            self.n = min(saved.get("n", 1), _MAX_AVG)

    def add(self, lat, lon, alt=None, hdop=None, nsat=None):
        """Fold in an accepted fix. Returns None, or (from_latlon, to_latlon, metres) when a relocation is confirmed."""
        self.hdop, self.nsat = hdop, nsat
        if self.n == 0:
            self._reset(lat, lon, alt)
            return None
        d = distance_m(self.lat, self.lon, lat, lon)
        if d <= self.relocation_m:
            self._far = 0
            self._far_sum = None
            k = min(self.n, _MAX_AVG - 1)
            # lat - anchor is exact in any float format (the two are close); the mean of such offsets keeps
            # sub-millimetre steps even in float32
            self._dlat += (lat - self._lat0 - self._dlat) / (k + 1)
            self._dlon += (lon - self._lon0 - self._dlon) / (k + 1)
            if alt is not None:
                self.alt = alt if self.alt is None else self.alt + (alt - self.alt) / (k + 1)
            self.n = k + 1
            return None
        # far from the average: a move only if it persists (summed as offsets from the first far fix)
        if self._far_sum is None:
            self._far_sum = [lat, lon, 0.0, 0.0, 0]
        s = self._far_sum
        s[2] += lat - s[0]
        s[3] += lon - s[1]
        s[4] += 1
        self._far += 1
        if self._far < _MOVE_CONFIRM:
            return None
        old = (self.lat, self.lon)
        new = (s[0] + s[2] / s[4], s[1] + s[3] / s[4])
        moved = distance_m(old[0], old[1], new[0], new[1])
        self._reset(new[0], new[1], alt)
        self.n = s[4]
        return old, new, moved

    def _reset(self, lat, lon, alt):
        self._lat0, self._lon0 = lat, lon
        self._dlat = self._dlon = 0.0
        self.alt = alt
        self.n = 1
        self._far = 0
        self._far_sum = None

    def as_dict(self):
        if not self.known:
            return None
        return {"lat": round(self.lat, 6), "lon": round(self.lon, 6),
                "alt": None if self.alt is None else round(self.alt, 1),
                "hdop": self.hdop, "nsat": self.nsat, "n": self.n}
