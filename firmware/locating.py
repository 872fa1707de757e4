"""Position and time from BeiDou through the modem: NMEA via AT, the fix policy, averaging, relocation."""

import json
import os

import nmea

from firmware.clock import epoch
from firmware.position import Position, acceptable

_LOST_AFTER = 3  # intervals without an acceptable fix before GNSS is reported lost
_SAVE_EVERY = 20  # fixes folded in between saves of the averaged position
_NET_CHECK_S = 600  # at most this often, network time is read to cross-check GNSS time


class Locating:
    def __init__(self, t):
        self.t = t
        self.pos = Position(t.cfg["relocation_m"])
        self.path = t.cfg["state_dir"] + "/position.json"
        self.fix = False
        self.nsat = None
        self.hdop = None
        self.bad_sentences = 0
        self.rejected = 0  # fixes refused by the policy (fake, weak)
        self._misses = 0
        self._lost = False
        self._had_fix = False
        self._since_save = 0
        self._net_checked = None  # uptime of the last network-time read asked for by the clock
        try:
            with open(self.path) as f:
                self.pos.restore(json.load(f))
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def _save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.pos.as_dict(), f)
        os.rename(tmp, self.path)
        self._since_save = 0

    def fold(self, lines):
        """Digest one batch of NMEA sentences (RMC + GGA); returns True if an acceptable fix was folded in."""
        rmc = gga = None
        for line in lines:
            try:
                s = nmea.parse(line)
            except nmea.NMEAError:
                self.bad_sentences += 1
                continue
            if s.kind == "RMC":
                rmc = s
            elif s.kind == "GGA":
                gga = s
        if gga is None:
            return False
        cfg = self.t.cfg
        self.nsat, self.hdop = gga.nsat, gga.hdop
        ok = acceptable(gga.fix and (gga.quality or 0) >= 1, gga.nsat, gga.hdop, cfg["min_sats"], cfg["hdop_max"])
        if not ok or gga.lat is None:
            if gga.fix:
                self.rejected += 1
            return False
        if rmc is not None and rmc.fix and rmc.date and rmc.utc:
            (y, mo, d), (h, mi, sec) = rmc.date, rmc.utc
            self.t.clock.set(epoch(y, mo, d, h, mi, sec), "gnss")
        first = not self.pos.known
        moved = self.pos.add(gga.lat, gga.lon, gga.alt, gga.hdop, gga.nsat)
        self._since_save += 1
        if first:
            self._save()
            self.t.emit_register("fix")  # the address can now be packed with a position
            return True
        if moved is not None:
            (olat, olon), (nlat, nlon), metres = moved
            self.t.emit_event("relocation", {"from": {"lat": round(olat, 6), "lon": round(olon, 6)},
                                             "to": {"lat": round(nlat, 6), "lon": round(nlon, 6)},
                                             "m": int(metres)})
            self.t.log.info("relocated by %d m", metres)
            self._save()
            self.t.emit_register("relocation")
        elif self._since_save >= _SAVE_EVERY or self.pos.n == 1:
            self._save()
        return True

    def fold_loc(self, loc):
        """Digest a QGPSLOC=2 answer (the fallback when NMEA through AT is unavailable)."""
        cfg = self.t.cfg
        if not loc or not acceptable(loc.get("fix", 0) >= 2, loc.get("nsat"), loc.get("hdop"), cfg["min_sats"],
                                     cfg["hdop_max"]):
            return False
        self.nsat, self.hdop = loc.get("nsat"), loc.get("hdop")
        self.pos.add(loc["lat"], loc["lon"], loc.get("alt"), loc.get("hdop"), loc.get("nsat"))
        return True

    def _track(self, got):
        t = self.t
        if got:
            self._misses = 0
            self.fix = True
            if self._lost or not self._had_fix:
                if self._lost:
                    t.emit_event("gnss_regained", {"nsat": self.nsat, "hdop": self.hdop})
                self._lost = False
            self._had_fix = True
            return
        self._misses += 1
        if self._misses >= _LOST_AFTER:
            self.fix = False
            if self._had_fix and not self._lost:
                self._lost = True
                t.emit_event("gnss_lost", {})

    async def run(self):
        t = self.t
        while True:
            t.checkin("gnss")
            got = False
            if await t.modem_up():
                try:
                    lines = await t.modem.gnss_nmea()
                    got = self.fold(lines)
                except t.modem_errors as e:
                    t.log.debug("NMEA through AT failed (%s); trying QGPSLOC", e)
                    try:
                        got = self.fold_loc(await t.modem.gnss_loc())
                    except t.modem_errors:
                        pass
            self._track(got)
            await self._cross_check()
            await t.sleep_checked("gnss", t.cfg["gnss_s"])

    async def _cross_check(self):
        """Read network time when the clock needs it to judge GNSS time (a jump, or never cross-checked)."""
        t = self.t
        clock = t.clock
        if not clock.wants_net:
            return
        up = clock.uptime_s()
        if self._net_checked is not None and up - self._net_checked < _NET_CHECK_S:
            return
        self._net_checked = up
        if not await t.modem_up():
            return
        try:
            nt = await t.modem.network_time()
        except t.modem_errors:
            return
        if nt:
            clock.set(epoch(*nt), "net")
