"""A simulated meter's memory: daily freezes at its own midnight (62 deep), settlements, event logs, status words.

Driven by the meter model (meter_model.py) with the meter's own clock, so a meter whose clock is wrong freezes
at the wrong instant, as a real one does. Encoded here independently of lib/dlt645_frozen.py on purpose: the
two check each other in the tests. What the sources say about the meters this imitates (a Chint-like
smart meter): DI0 is a binary "N-th previous" index, a freeze or record that never happened reads as zeros,
the block DIs with DI1 = FF (0506FF01) are refused, event counts are 3 BCD bytes and the last 10 records are
kept. The meter settles (结算日) at its settlement day 1, DDhh in DI 04000B01 (the 1st at 00:00 unless set
otherwise), and makes up the settlements missed while its supply was off at power-up. Broadcast time sync is
taken only within 5 minutes of the meter's time, once per calendar day, and never within 5 minutes of
midnight (the freeze and settlement instant).
"""

import calendar
import time
from collections import deque

from tools.sim.dlt645_wire import bcd

DAILY_DEPTH = 62
SETTLE_DEPTH = 12
EVENT_DEPTH = 10
BACKFILL_MAX = 7  # freezes missed while the mains was off are made up at power-up, up to this many days
SYNC_WINDOW_S = 300
SYNC_GUARD_S = 300
SETTLE_DAY_DI = 0x04000B01

# kind -> (count DI, record base DI, record length)
EVENTS = {
    "power_down": (0x03110000, 0x03110000, 12),
    "programming": (0x03300000, 0x03300000, 50),
    "meter_clear": (0x03300100, 0x03300100, 106),
    "event_clear": (0x03300300, 0x03300300, 14),
    "clock_set": (0x03300400, 0x03300400, 16),
    "meter_cover": (0x03300D00, 0x03300D00, 60),
    "terminal_cover": (0x03300E00, 0x03300E00, 60),
}


def stamp(t, seconds=True):
    """Naive local seconds -> YYMMDDhhmm[ss] bytes, lowest first."""
    y, mo, d, h, mi, s = time.gmtime(int(t))[:6]
    fields = ([s] if seconds else []) + [mi, h, d, mo, y % 100]
    return b"".join(bcd(f, 1) for f in fields)


def stamp_text(t, seconds=True):
    y, mo, d, h, mi, s = time.gmtime(int(t))[:6]
    out = "%04d-%02d-%02dT%02d:%02d" % (y, mo, d, h, mi)
    return out + (":%02d" % s if seconds else "")


def energies(values):
    return b"".join(bcd(v, 4) for v in values)


class MeterHistory:
    """Freezes, settlements and event logs of one meter, in the meter's own (local, naive) clock seconds."""

    def __init__(self, depth=DAILY_DEPTH, settle_at=(1, 0)):
        self.depth = depth
        self.settle_at = settle_at  # (day 1..28, hour 0..23): settlement day 1
        self.daily = deque(maxlen=depth)  # newest first: {"t": freeze clock s, "fwd": [tot, t1..t4], "rev": [tot]}
        self.settled = deque(maxlen=SETTLE_DEPTH)  # newest first: {"t": clock s, "fwd": [tot, t1..t4], "rev": [tot]}
        self.counts = dict.fromkeys(EVENTS, 0)
        self.records = {k: deque(maxlen=EVENT_DEPTH) for k in EVENTS}  # newest first: bytearray records
        self.mains = True
        self.cover_open = False
        self.synced_day = None  # the meter's calendar day of the last accepted broadcast sync
        self._down_at = None

    # -- time passing ------------------------------------------------------------------------
    def tick(self, c0, c1, fwd, rev):
        """The meter clock went from c0 to c1 (seconds) with registers now fwd [tot, t1..t4], rev [tot]."""
        if not self.mains:
            return
        d0, d1 = int(c0 // 86400), int(c1 // 86400)
        for day in range(max(d0 + 1, d1 - self.depth + 1), d1 + 1):
            self._freeze(day * 86400, fwd, rev)
        self._settle(c0, c1, fwd, rev)

    def _freeze(self, t, fwd, rev):
        self.daily.appendleft({"t": t, "fwd": list(fwd), "rev": list(rev)})

    def _settle(self, c0, c1, fwd, rev):
        """Settle at every settlement instant in (c0, c1] (the newest SETTLE_DEPTH of them)."""
        day, hour = self.settle_at
        y, mo = time.gmtime(int(c0))[:2]
        due = []
        while True:
            t = local_seconds((y, mo, day, hour, 0, 0))
            if t > c1:
                break
            if t > c0:
                due.append(t)
            y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
        for t in due[-SETTLE_DEPTH:]:
            self.settled.appendleft({"t": t, "fwd": list(fwd), "rev": list(rev)})

    def settlements(self):
        """Every settlement kept, oldest first, as the control port reports them (energies in kWh)."""
        return [{"date": stamp_text(s["t"], False)[:10], "at": stamp_text(s["t"], False),
                 "fwd": [x / 100 for x in s["fwd"]], "rev": [x / 100 for x in s["rev"]]}
                for s in reversed(self.settled)]

    def freezes(self):
        """Every freeze kept, oldest first, as the control port reports them (energies in kWh)."""
        return [{"date": stamp_text(f["t"], False)[:10], "at": stamp_text(f["t"], False),
                 "fwd": [x / 100 for x in f["fwd"]], "rev": [x / 100 for x in f["rev"]]}
                for f in reversed(self.daily)]

    # -- events --------------------------------------------------------------------------------
    def _event(self, kind, record):
        self.counts[kind] = (self.counts[kind] + 1) % 1000000
        self.records[kind].appendleft(bytearray(record))

    def mains_off(self, clock):
        if self.mains:
            self.mains = False
            self._down_at = clock
            self._event("power_down", stamp(clock) + bytes(6))  # end written at power-up

    def mains_on(self, clock, fwd, rev):
        if self.mains:
            return
        self.mains = True
        rec = self.records["power_down"][0]
        rec[6:12] = stamp(clock)
        # freezes missed while off, made up with the (unchanged) registers, up to BACKFILL_MAX days
        d0, d1 = int(self._down_at // 86400), int(clock // 86400)
        for day in range(max(d0 + 1, d1 - BACKFILL_MAX + 1), d1 + 1):
            self._freeze(day * 86400, fwd, rev)
        self._settle(self._down_at, clock, fwd, rev)

    def cover(self, is_open, clock, fwd, rev):
        if is_open == self.cover_open:
            return
        self.cover_open = is_open
        e = energies([fwd[0], rev[0], 0, 0, 0, 0])
        if is_open:
            self._event("meter_cover", stamp(clock) + bytes(6) + e + bytes(24))
        else:
            rec = self.records["meter_cover"][0]
            rec[6:12] = stamp(clock)
            rec[36:60] = e

    def clock_set(self, before, after, operator=0):
        self._event("clock_set", bcd(operator, 4) + stamp(before) + stamp(after))

    def may_broadcast_sync(self, clock, new):
        """True if a broadcast time sync to `new` is taken by a meter whose clock reads `clock`."""
        if abs(new - clock) >= SYNC_WINDOW_S:
            return False
        tod = clock % 86400
        if tod < SYNC_GUARD_S or tod > 86400 - SYNC_GUARD_S:
            return False
        return self.synced_day != int(clock // 86400)

    def broadcast_synced(self, clock):
        self.synced_day = int(clock // 86400)

    # -- serving ----------------------------------------------------------------------------------
    def status_words(self):
        words = [0] * 7
        if not self.mains:
            words[6] |= 1 << 5
        if self.cover_open:
            words[6] |= 1 << 9
        return words

    def read(self, di, fwd_now):
        """(value, value bytes) of a history DI, None if it is not one (or not served: "no such data")."""
        hi, nn = di >> 8, di & 0xFF
        if hi in (0x050600, 0x050601, 0x050602):
            if not 1 <= nn <= DAILY_DEPTH:
                return None
            f = self.daily[nn - 1] if nn <= len(self.daily) else None
            if hi == 0x050600:
                return (stamp_text(f["t"], False) if f else None), (stamp(f["t"], False) if f else bytes(5))
            key = "fwd" if hi == 0x050601 else "rev"
            size = 5 if key == "fwd" else 1
            vals = f[key] if f else [0] * size
            return [v / 100 for v in vals], energies(vals)
        if di == SETTLE_DAY_DI:
            day, hour = self.settle_at
            return "%02d%02d" % (day, hour), bcd(hour, 1) + bcd(day, 1)
        if hi in (0x0001FF, 0x000100, 0x000200) and 1 <= nn <= SETTLE_DEPTH:
            s = self.settled[nn - 1] if nn <= len(self.settled) else {"fwd": [0] * 5, "rev": [0]}
            vals = s["fwd"] if hi == 0x0001FF else ([s["fwd"][0]] if hi == 0x000100 else s["rev"])
            return [v / 100 for v in vals], energies(vals)
        for kind, (count_di, base, size) in EVENTS.items():
            if di == count_di:
                return self.counts[kind], bcd(self.counts[kind], 3)
            if base < di <= base + EVENT_DEPTH:
                k = di - base - 1
                recs = self.records[kind]
                raw = bytes(recs[k]) if k < len(recs) else bytes(size)
                return raw.hex(), raw
        if 0x04000501 <= di <= 0x04000507:
            w = self.status_words()[di - 0x04000501]
            return w, bytes((w & 0xFF, w >> 8))
        if di == 0x040005FF:
            ws = self.status_words()
            return ws, b"".join(bytes((w & 0xFF, w >> 8)) for w in ws)
        return None


def local_seconds(tm):
    """(y, mo, d, h, mi, s) -> naive seconds."""
    return calendar.timegm(tuple(tm[:6]) + (0, 0, 0))
