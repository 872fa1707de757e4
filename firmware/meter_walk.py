"""What the collections of a meter's own stored records share: paced, timed bus reads; progress on flash; rounds.

A collection (daily freezes: frozen.py; settlements: settlement.py) walks a meter's "N-th previous" records
oldest first and stores each as a record keyed by (meter, date), so re-sending one is harmless. The last
date stored per meter is written atomically after each record (`meter_state`), so a power cut means
resume, never restart and never skip. Bus reads are paced (`frozen_pace_ms`) so live polls keep their
timing, and the wire time they took is added up (`bus_ms`, a figure for the bench).
"""

import asyncio

import dlt645

from firmware import meter_state

RETRY_S = 3600  # a meter that did not answer, or is behind: try again after this
WALKS = 3  # restarts of one catch-up when the meter's records keep shifting under it


def spread_s(tid, window_s):
    """This terminal's offset within the collection window, the same every day (a hash of its id)."""
    if window_s <= 0:
        return 0
    h = 5381
    for ch in tid or "":
        h = (h * 33 + ord(ch)) & 0xFFFFFF
    return h % window_s


class Shifted(Exception):
    """The meter froze (or settled) while its records were being read: indexes moved by one."""


class MeterWalk:
    """The shared part: progress per meter, paced reads, one round over the meters with errors counted."""

    FILE = "/walk.json"  # progress file under state_dir: {address: last date stored}
    WHAT = "records"  # for the log

    def __init__(self, master, cfg, clock, store, log, pause=None):
        self.master = master
        self.cfg = cfg
        self.clock = clock
        self.store = store  # store(kind, body) -> seq, or None when the outbox could not write it
        self.log = log
        self.pause = pause  # awaitable factory between bus reads, else asyncio.sleep_ms(frozen_pace_ms)
        self.path = cfg["state_dir"] + self.FILE
        self.progress = meter_state.load(self.path, log)  # address -> last date stored, "YYYY-MM-DD"
        self.lacking = set()  # meters that answer "no such data" for these records
        self.stored = 0
        self.undecodable = 0  # replies that did not fit a known layout (refused, counted)
        self.bus_ms = 0  # wire time of the frames this module exchanged
        self.behind = False  # the last round left a meter behind (no answer, or not written)
        self.rewalks = 0  # catch-ups walked again because the meter's records shifted meanwhile
        self.rounds = 0  # rounds since boot: the first is the catch-up at boot, later ones are scheduled

    async def _pace(self):
        if self.pause:
            await self.pause()
        else:
            await asyncio.sleep_ms(self.cfg["frozen_pace_ms"])

    async def _read(self, addr, di, expect_refusal=False):
        raw = await self.master.read_raw(addr, di, expect_refusal)
        self.bus_ms += self.master.wire_ms(32 + len(raw))  # request with preamble + reply
        await self._pace()
        return raw

    def _keep(self, kind, addr, date, body):
        """Store one record, then its progress (a cut in between re-sends it, never skips it); False if the
        outbox could not write it (progress stays: retried later)."""
        if self.store(kind, body) is None:
            self.behind = True
            self.log.error("meter %s %s %s not stored; retrying later", addr, kind, date)
            return False
        self.progress[addr] = date
        meter_state.save(self.path, self.progress, self.log)
        self.stored += 1
        return True

    async def _walk(self, addr, arg):
        raise NotImplementedError

    async def collect(self, addr, arg=None):
        """Store every record of `addr` newer than the last stored, oldest first; the number stored.

        Errors of the meter link propagate (the caller retries later); a meter without these records is
        remembered and skipped."""
        if addr in self.lacking:
            return 0
        stored = 0
        for _ in range(WALKS):
            try:
                stored += await self._walk(addr, arg)
                return stored
            except Shifted:
                self.rewalks += 1
                self.log.info("meter %s: %s shifted during catch-up; walking again", addr, self.WHAT)
            except dlt645.Corrupt:
                self.undecodable += 1
                raise
            except dlt645.MeterError as e:
                if not e.no_data:
                    raise
                self.lacking.add(addr)
                self._no_data(addr, e)
                return stored
        return stored

    def _no_data(self, addr, e):
        self.log.warning("meter %s keeps no %s (%s)", addr, self.WHAT, e)

    def _arg(self):
        return None

    async def round(self, meters, checkin=None):
        """One collection over `meters`; True if every meter answered."""
        self.behind = False
        self.rounds += 1
        ok = True
        for addr in meters:
            if checkin:
                checkin()
            try:
                n = await self.collect(addr, self._arg())
            except dlt645.DLT645Error as e:
                self.log.warning("meter %s %s: %s", addr, self.WHAT, e)
                self.behind = True
                ok = False
                continue
            if n:
                self.log.info("meter %s: %d %s stored, up to %s (round %d since boot)", addr, n, self.WHAT,
                              self.progress.get(addr), self.rounds)
        return ok
