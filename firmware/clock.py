"""UTC for time stamps, with where it came from: GNSS, network time, a free-running RTC, or nothing yet."""

import time

from mpcompat import ticks_diff, ticks_ms

_EPOCH_2024 = 1704067200
_NET_AFTER_GNSS_S = 6 * 3600  # network time may correct the clock only when GNSS has been silent this long


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

    def __init__(self):
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

    def set(self, utc, source):
        """Adopt `utc` (Unix seconds) from `source` ('gnss' or 'net'). Returns True if adopted."""
        if utc < _EPOCH_2024:
            return False
        up = self._uptime_ms()
        if source == "net" and self._gnss_up_ms is not None and up - self._gnss_up_ms < _NET_AFTER_GNSS_S * 1000:
            return False
        if source == "gnss":
            self._gnss_up_ms = up
        self._ref_up_ms = up
        self._ref_utc = utc
        self.source = source
        return True

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
