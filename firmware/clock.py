"""UTC for time stamps, with where it came from: GNSS, network time, a free-running RTC, or nothing yet.

Time sources are cross-checked before the clock jumps. A reading within _AGREE_S
of the running clock disciplines it; a bigger jump is adopted only when the other
source (GNSS vs network time) agrees with it, and refused when that source
disagrees, or when nothing can confirm a jump away from a clock already set from
GNSS or the network (a clock from the RTC or from nothing may jump unconfirmed).
A receiver reporting the wrong hour or week, or a network with a wrong clock,
then cannot move the terminal's time (nor the meters'); each run of refusals is
counted and reported once through `on_refused(src, delta_s)`.

A simulation on the unix port may run the clock `scale` times faster than real time (BDMETER_TIME_SCALE,
see `env_scale`): everything derived from uptime (now, readings carried forward, their ages) runs
scaled, `uptime_s()` stays real (task intervals), and the agreement window widens by what message delays
of a few host seconds become. `real_s` turns a wait to a calendar time into host seconds. A board has no
environment: it always runs at scale 1.
"""

import time

from mpcompat import ticks_diff, ticks_ms

_EPOCH_2024 = 1704067200
_NET_AFTER_GNSS_S = 6 * 3600  # network time may correct the clock only when GNSS has been silent this long
_AGREE_S = 60  # sources (or a source and the running clock) this close agree
_READING_MAX_AGE_S = 7 * 86400  # an older reading of the other source no longer confirms nor refutes
_DISPUTE_S = 3600  # after a refusal the clock counts as disputed this long (no meter sync from it)
_LAG_S = 2  # host seconds a reading may be late (AT round trip, a busy host): scaled, the agreement window
_SCALE_MAX = 86400  # a day per second at most
SCALE_ENV = "BDMETER_TIME_SCALE"


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


def env_scale():
    """(scale, problem) from the unix port's BDMETER_TIME_SCALE: (1, None) on a board (no os.getenv) or unset;
    (1, text) when the value is not a whole number 1.._SCALE_MAX."""
    import os

    getenv = getattr(os, "getenv", None)
    raw = getenv(SCALE_ENV) if getenv else None
    if not raw:
        return 1, None
    try:
        scale = int(raw)
    except ValueError:
        scale = 0
    if not 1 <= scale <= _SCALE_MAX:
        return 1, "%s=%r ignored: not a whole number 1..%d" % (SCALE_ENV, raw, _SCALE_MAX)
    return scale, None


def real_s(clock, calendar_s):
    """Host seconds to wait for `calendar_s` seconds of `clock`'s time: the same at scale 1, else divided (1 s at
    least, so no loop spins). A clock without a scale runs real time."""
    scale = getattr(clock, "scale", 1)
    if scale == 1:
        return calendar_s
    return max(1, calendar_s / scale)


class Clock:
    """Time from ticks_ms, re-anchored at least daily so the 2**30 ms tick wrap never bites."""

    def __init__(self, on_refused=None, scale=1):
        self.on_refused = on_refused
        self.scale = scale  # simulated seconds per real second (1 but in a simulation on the unix port)
        self.agree_s = max(_AGREE_S, _LAG_S * scale)
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
        """Real seconds since boot (never scaled: task intervals)."""
        return self._uptime_ms() // 1000

    def uptime_ms(self):
        """Real milliseconds since boot: for schedules a scaled clock needs finer than a second."""
        return self._uptime_ms()

    def _since_ms(self, up_ms):
        """Clock milliseconds since uptime `up_ms` (scaled)."""
        return (self._uptime_ms() - up_ms) * self.scale

    def reading(self, source, max_age_s=_READING_MAX_AGE_S):
        """What `source` would say now, from its latest reading carried forward on ticks; None if none that fresh."""
        r = self._readings.get(source)
        if r is None:
            return None
        age_ms = self._since_ms(r[1])
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
        if self._ref_utc is not None and abs(utc - self.now()) > self.agree_s:  # a jump
            if other is not None and abs(utc - other) > self.agree_s:
                return self._refuse(source, utc, up)  # the other source disagrees
            if other is None and self.source in ("gnss", "net"):
                return self._refuse(source, utc, up)  # away from a checked clock, and nothing confirms it
        self._refusing.pop(source, None)
        if source == "net" and self._gnss_up_ms is not None and \
                (up - self._gnss_up_ms) * self.scale < _NET_AFTER_GNSS_S * 1000:
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
        if last is None or (up - last) * self.scale > _DISPUTE_S * 1000:
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
        for at in self._refusing.values():
            if self._since_ms(at) <= _DISPUTE_S * 1000:
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
        return self._ref_utc + (up - self._ref_up_ms) * self.scale // 1000

    @property
    def trusted(self):
        return self.source != "none"

    def stamp(self):
        return self.now(), self.source
