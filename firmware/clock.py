"""UTC for time stamps, with where it came from: GNSS, network time, a free-running RTC, or nothing yet.

Time sources are cross-checked before the clock jumps. A reading within _AGREE_S
of the running clock disciplines it; a bigger jump is adopted only when the other
source (GNSS vs network time) agrees with it, and refused when that source
disagrees, or when nothing can confirm a jump away from a clock already set from
GNSS or the network (a clock from the RTC or from nothing may jump unconfirmed).
A receiver reporting the wrong hour or week, or a network with a wrong clock,
then cannot move the terminal's time (nor the meters'); each run of refusals is
counted and reported once through `on_refused(src, delta_s)`.
"""

import time

from mpcompat import ticks_diff, ticks_ms

_EPOCH_2024 = 1704067200
_NET_AFTER_GNSS_S = 6 * 3600  # network time may correct the clock only when GNSS has been silent this long
_AGREE_S = 60  # sources (or a source and the running clock) this close agree
_READING_MAX_AGE_S = 7 * 86400  # an older reading of the other source no longer confirms nor refutes
_DISPUTE_S = 3600  # after a refusal the clock counts as disputed this long (no meter sync from it)


def epoch(y, mo, d, h=0, mi=0, s=0):
    """Unix seconds for a UTC date and time (proleptic Gregorian; no time zone involved)."""
    y2 = y - (mo <= 2)
    era = y2 // 400
    yoe = y2 - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + h * 3600 + mi * 60 + int(s)


def civil(t):
    """Unix seconds -> (year, month, day, hour, minute, second) UTC."""
    days, rem = divmod(int(t), 86400)
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    mo = mp + (3 if mp < 10 else -9)
    return (y + (mo <= 2), mo, d, rem // 3600, rem % 3600 // 60, rem % 60)


class Clock:
    """Time from ticks_ms, re-anchored at least daily so the 2**30 ms tick wrap never bites."""

    def __init__(self, on_refused=None):
        self.on_refused = on_refused
        self.refused = 0  # runs of refused readings (a jump refused every second counts once)
        self._readings = {}  # source -> (utc, uptime ms) of its latest plausible reading
        self._refusing = {}  # source -> uptime ms of its latest refused reading, while refusals go on
        self._ticks = ticks_ms()
        self._up_ms = 0  # milliseconds since boot, folded in from ticks
        self._ref_utc = None  # UTC seconds at uptime _ref_up_ms
        self._ref_up_ms = 0
        self.source = "none"
        self._gnss_up_ms = None
        rtc = int(time.time())
        if rtc > _EPOCH_2024:  # the RTC kept a plausible date across the reset
            self._ref_utc = rtc
            self.source = "rtc"

    def _uptime_ms(self):
        now = ticks_ms()
        self._up_ms += ticks_diff(now, self._ticks)
        self._ticks = now
        return self._up_ms

    def uptime_s(self):
        return self._uptime_ms() // 1000

    def reading(self, source, max_age_s=_READING_MAX_AGE_S):
        """What `source` would say now, from its latest reading carried forward on ticks; None if none that fresh."""
        r = self._readings.get(source)
        if r is None:
            return None
        age_ms = self._uptime_ms() - r[1]
        if age_ms > max_age_s * 1000:
            return None
        return r[0] + age_ms // 1000

    def set(self, utc, source):
        """Adopt `utc` (Unix seconds) from `source` ('gnss' or 'net'). Returns True if adopted.

        A jump that the other source contradicts, or that nothing confirms, is refused (see the module)."""
        if utc < _EPOCH_2024:
            return False
        up = self._uptime_ms()
        other = self.reading("net" if source == "gnss" else "gnss")
        self._readings[source] = (utc, up)
        if self._ref_utc is not None and abs(utc - self.now()) > _AGREE_S:  # a jump
            if other is not None and abs(utc - other) > _AGREE_S:
                return self._refuse(source, utc, up)  # the other source disagrees
            if other is None and self.source in ("gnss", "net"):
                return self._refuse(source, utc, up)  # away from a checked clock, and nothing confirms it
        self._refusing.pop(source, None)
        if source == "net" and self._gnss_up_ms is not None and up - self._gnss_up_ms < _NET_AFTER_GNSS_S * 1000:
            return False
        if source == "gnss":
            self._gnss_up_ms = up
        self._ref_up_ms = up
        self._ref_utc = utc
        self.source = source
        return True

    def _refuse(self, source, utc, up):
        delta = utc - self.now() if self._ref_utc is not None else 0
        last = self._refusing.get(source)
        self._refusing[source] = up
        if last is None or up - last > _DISPUTE_S * 1000:
            self.refused += 1
            if self.on_refused:
                self.on_refused(source, delta)
        return False

    @property
    def agreed(self):
        """True when the time comes from GNSS or the network and no source has contradicted it lately:
        only then may the meters be set from it."""
        if self.source not in ("gnss", "net"):
            return False
        up = self._uptime_ms()
        for at in self._refusing.values():
            if up - at <= _DISPUTE_S * 1000:
                return False
        return True

    @property
    def wants_net(self):
        """True when a network reading would settle something: GNSS is being refused and no network reading
        is fresh (10 minutes), or the clock came from GNSS and nothing has ever cross-checked it."""
        if "gnss" in self._refusing:
            return self.reading("net", 600) is None
        return self.source == "gnss" and self.reading("net") is None

    def now(self):
        """Unix seconds UTC; seconds since boot while the clock has never been set."""
        up = self._uptime_ms()
        if self._ref_utc is None:
            return up // 1000
        return self._ref_utc + (up - self._ref_up_ms) // 1000

    @property
    def trusted(self):
        return self.source != "none"

    def stamp(self):
        return self.now(), self.source
