"""One simulated DL/T 645 meter: its load profile, energy registers, instantaneous values, clock and refusals.

Time: "true" local time runs `time_scale` times faster than the host's clock (and can jump ahead with
`advance`), so days pass in minutes; the meter's own clock is true time plus an offset that drifts by
`drift_ppm`. The meter freezes, settles and logs events on its own clock (meter_history.py).
"""

import calendar
import math
import threading
import time
from dataclasses import dataclass

from tools.sim.dlt645_wire import FORMATS, encode_value
from tools.sim.meter_history import MeterHistory, local_seconds

TARIFF_BY_HOUR = "444444442211333332211334"  # 1 sharp, 2 peak, 3 flat, 4 valley (local hour -> tariff)
BLOCK_DI = 0x0001FF00
# What a single-phase DL/T 645-2007 meter does not have: voltage, current and power of phases B and C.
PHASE_BC_DIS = (0x02010200, 0x02010300, 0x02020200, 0x02020300, 0x02030200, 0x02030300)


@dataclass
class MeterSpec:
    """What a simulated meter is: address, load profile, registers at start, timing, limits."""

    address: str
    base_kw: float = 1.2
    swing_kw: float = 0.8  # daily sine amplitude, peaking at local noon
    noise_kw: float = 0.1
    export_kw: float = 0.0  # solar-like export peak at noon: net power can go negative (reverse energy)
    phases: int = 3  # 1: a single-phase meter, which refuses phases B and C (ERR "no such data")
    block: bool = True  # False: refuses the block DI 0001FF00 (ERR "no such data"); registers one by one
    volts: float = 230.0
    pf: float = 0.95
    start_kwh: float = None  # forward total at start; None: seeded random
    reverse_kwh: float = 0.0
    clock_offset_s: float = 0.0  # meter clock minus true local time
    latency_ms: tuple = None  # None: the bus default
    max_frame_data: int = 200  # L limit of one reply frame; longer values go out as follow-up frames
    meter_number: str = None  # 04000402 / C032; None: the address
    password: str = "000000"  # for writes (14), level 02
    drift_ppm: float = 0.0  # the meter clock gains this many millionths of a second per second
    strict_sync: bool = True  # False: take any broadcast time sync (no window, guard or daily limit)
    history_depth: int = 62  # daily freezes kept
    settle_at: tuple = (1, 0)  # settlement day 1 (DI 04000B01): day of the month, hour
    settles: bool = True  # False: a meter without settlement data (its DIs answered "no such data")


class Meter:
    """One simulated meter: energy registers that grow with its load profile, instantaneous values, a clock."""

    def __init__(self, spec, rng, speedup=1.0, utc_offset_s=8 * 3600, time_scale=1.0):
        self.spec = spec
        self.address = spec.address
        self.faults = {}  # fault name -> replies left to spoil (None: until switched off)
        self.speedup = speedup
        self.utc_offset_s = utc_offset_s
        self.clock_offset_s = spec.clock_offset_s
        self.drift_ppm = spec.drift_ppm
        self.history = MeterHistory(spec.history_depth, tuple(spec.settle_at))
        self._base_wall = time.time()  # true UTC = _base_true + (wall - _base_wall) * time_scale
        self._base_true = self._base_wall
        self.time_scale = time_scale
        self._drift_ref = self.true_utc()
        self._rng = rng
        self._lock = threading.Lock()
        start = spec.start_kwh if spec.start_kwh is not None else rng.uniform(100, 9000)
        total = int(round(start * 100))
        shares = (0.15, 0.3, 0.35)
        self._tariff = [int(total * s) for s in shares]
        self._tariff.append(total - sum(self._tariff))  # tariffs sum to the total exactly
        self._reverse = int(round(spec.reverse_kwh * 100))
        self._residual = 0.0  # energy below 0.01 kWh not yet counted, kWh (signed: import > 0)
        self._upto = self.true_utc()  # true time up to which energy is counted
        self._last_clock = self.clock()
        self._phase_v = [rng.uniform(-3, 3) for _ in range(3)]
        self._p_kw = self._power(self.clock())
        self._snap = None  # (monotonic time, instantaneous values)
        self.followup = None  # the last read's reply split into parts, for follow-up requests (12 / 02)

    # -- time ------------------------------------------------------------------------------
    def true_utc(self):
        """The simulation's true UTC (Unix seconds): the host's clock, scaled and advanced."""
        return self._base_true + (time.time() - self._base_wall) * self.time_scale

    def set_time_scale(self, scale):
        """From now on true time runs `scale` times faster than the host's clock."""
        with self._lock:
            self._advance()
            now = self.true_utc()
            self._base_wall, self._base_true, self.time_scale = time.time(), now, float(scale)

    def advance(self, seconds):
        """Jump true time ahead by `seconds`: energy grows, the meter freezes at each of its midnights."""
        with self._lock:
            self._base_true += seconds
            self._advance()

    @property
    def _last(self):
        """The host's monotonic time up to which energy is counted (as before true time was scaled)."""
        return time.monotonic() - (self.true_utc() - self._upto) / (self.time_scale or 1.0)

    @_last.setter
    def _last(self, mono):
        self._upto = self.true_utc() - (time.monotonic() - mono) * (self.time_scale or 1.0)

    def _clock_at(self, true_utc):
        drift = (true_utc - self._drift_ref) * self.drift_ppm / 1e6
        return true_utc + self.utc_offset_s + self.clock_offset_s + drift

    # clock: naive local seconds (epoch-style, local time of the meter)
    def clock(self):
        return self._clock_at(self.true_utc())

    def clock_tuple(self):
        return tuple(time.gmtime(self.clock())[:6])

    def set_clock(self, tm):
        """tm = (year, month, day, hour, minute, second) as the meter's local time."""
        with self._lock:
            self._advance()
            now = self.true_utc()
            self._drift_ref = now
            self.clock_offset_s = calendar.timegm(tuple(tm[:6]) + (0, 0, 0)) - now - self.utc_offset_s
            self._last_clock = self.clock()

    def write_clock(self, tm):
        """A clock write (14 to 04000101/02): set, and logged as a clock-set event."""
        before = self.clock()
        self.set_clock(tm)
        with self._lock:
            self.history.clock_set(before, self.clock())

    def broadcast_sync(self, tm):
        """A broadcast time sync (08): taken only as a real meter takes it. True if taken."""
        with self._lock:
            self._advance()
            clock = self.clock()
            if not self.history.mains:
                return False
            if self.spec.strict_sync and not self.history.may_broadcast_sync(clock, local_seconds(tm)):
                return False
        self.set_clock(tm)
        with self._lock:
            self.history.broadcast_synced(self.clock())
        return True

    # -- mains, cover ------------------------------------------------------------------------
    @property
    def powered(self):
        return self.history.mains

    def set_mains(self, on):
        """Cut (False) or restore (True) the meter's supply: it goes silent, logs a power-down, makes up freezes."""
        with self._lock:
            self._advance()
            if on:
                self._upto = self.true_utc()  # no energy counted while off
                self.history.mains_on(self.clock(), *self._regs_for_history())
            else:
                self.history.mains_off(self.clock())

    def set_cover(self, is_open):
        with self._lock:
            self._advance()
            self.history.cover(is_open, self.clock(), *self._regs_for_history())

    def set_forward(self, kwh):
        """Registers as another meter's (a swap on site): forward total `kwh`, split over the tariffs as at start."""
        with self._lock:
            self._advance()
            total = int(round(kwh * 100))
            self._tariff = [int(total * s) for s in (0.15, 0.3, 0.35)]
            self._tariff.append(total - sum(self._tariff))

    def _regs_for_history(self):
        return [sum(self._tariff)] + list(self._tariff), [self._reverse]

    def freezes(self):
        with self._lock:
            self._advance()
            return self.history.freezes()

    def settlements(self):
        with self._lock:
            self._advance()
            return self.history.settlements()

    def events(self):
        with self._lock:
            return {"counts": dict(self.history.counts)}

    def _power(self, clock_s):
        tod = (clock_s % 86400) / 86400.0
        sun = max(0.0, math.sin(2 * math.pi * (tod - 0.25)))
        load = self.spec.base_kw + self.spec.swing_kw * math.sin(2 * math.pi * (tod - 0.25))
        load = max(0.05, load + self._rng.gauss(0, self.spec.noise_kw))
        return load - self.spec.export_kw * sun

    def _advance(self):
        # In steps of at most 5 minutes of true time: the tariff of the hour and the freezes at midnight.
        now = self.true_utc()
        if not self.history.mains:
            self._upto = now
            self._last_clock = self._clock_at(now)
            return
        while self._upto < now:
            dt = min(300.0, now - self._upto)
            self._upto += dt
            clock = self._clock_at(self._upto)
            self._p_kw = self._power(clock)
            self._residual += self._p_kw * dt * self.speedup / 3600.0
            counts = int(self._residual * 100)  # toward zero
            if counts > 0:
                self._tariff[int(TARIFF_BY_HOUR[int(clock % 86400) // 3600]) - 1] += counts
            elif counts < 0:
                self._reverse -= counts
            self._residual -= counts / 100.0
            self.history.tick(self._last_clock, clock, *self._regs_for_history())
            self._last_clock = clock

    def _instant(self, p):
        """Instantaneous V/I/P/PF/f: measured once per second, like a meter, so reads agree with each other."""
        now = time.monotonic()
        if self._snap is not None and now - self._snap[0] < 1.0:
            return self._snap[1]
        rng = self._rng
        n = self.spec.phases
        weights = (1.0, 0.0, 0.0) if n == 1 else (0.4, 0.35, 0.25)
        pf = round(min(1.0, max(0.5, self.spec.pf + rng.gauss(0, 0.005))), 3)
        regs = {}
        ptot = 0.0
        for k in range(3):
            v = round(self.spec.volts + self._phase_v[k] + rng.gauss(0, 0.3), 1) if k < n else 0.0
            pk = round(p * weights[k], 4)
            i = round(pk * 1000 / (v * pf), 3) if v else 0.0  # P = V * I * PF per phase
            regs[0x02010100 + 0x100 * k] = v
            regs[0x02020100 + 0x100 * k] = i
            regs[0x02030100 + 0x100 * k] = pk
            ptot += pk
        regs[0x02030000] = round(ptot, 4)
        regs[0x02060000] = pf
        regs[0x02800002] = round(50 + rng.gauss(0, 0.02), 2)
        self._snap = (now, regs)
        return regs

    def registers(self):
        """Current value of every DI this meter serves, as the meter would report it (rounded)."""
        with self._lock:
            self._advance()
            t = list(self._tariff)
            rev = self._reverse
            regs = dict(self._instant(self._p_kw))
        fwd = sum(t)
        regs[0x00000000] = (fwd - rev) / 100  # combined = forward - reverse
        regs[0x00010000] = fwd / 100
        regs[0x00020000] = rev / 100
        regs[0x0001FF00] = [fwd / 100] + [x / 100 for x in t]
        for k in range(4):
            regs[0x00010100 + 0x100 * k] = t[k] / 100
        y, mo, d, h, mi, s = self.clock_tuple()
        regs[0x04000101] = "%04d-%02d-%02d" % (y, mo, d)
        regs[0x04000102] = "%02d:%02d:%02d" % (h, mi, s)
        regs[0x04000401] = self.address
        regs[0x04000402] = self.spec.meter_number or self.address
        regs[0x9010] = fwd / 100
        regs[0xB611] = int(round(regs[0x02010100]))
        regs[0xB621] = round(abs(regs[0x02020100]), 2)
        regs[0xB630] = abs(regs[0x02030000])
        regs[0xC010] = regs[0x04000101]
        regs[0xC011] = regs[0x04000102]
        regs[0xC032] = regs[0x04000402]
        return {di: v for di, v in regs.items() if self.has(di)}

    def has(self, di):
        """False for a DI this meter does not keep (answered with ERR "no such data")."""
        if di not in FORMATS:
            if not self.spec.settles and (di == 0x04000B01 or di >> 16 in (0x0001, 0x0002)):
                return False
            return self.history.read(di, None) is not None
        if self.spec.phases == 1 and di in PHASE_BC_DIS:
            return False
        return self.spec.block or di != BLOCK_DI

    def read(self, di):
        """(value, value bytes) of a DI, or None if this meter has no such data."""
        if not self.has(di):
            return None
        if di not in FORMATS:
            with self._lock:
                self._advance()
                return self.history.read(di, None)
        v = self.registers()[di]
        return v, encode_value(di, v)
