"""GNSS scenario for the modem simulator: cold start, an early fake fix, then noisy fixes; NMEA 4.1 output.

Phases, counted from AT+QGPS=1: no fix for `cold_start_s`; then for `fake_fix_s`
a fake fix (quality 1, 0 satellites, HDOP 0.00, a position kilometres off) like
some modules report early in acquisition; then fixes scattered around the
configured position with Gaussian noise of `noise_m` metres, 6..14 satellites
and HDOP 0.6..1.8. An antenna fault keeps it at no fix with 0 satellites. RMC
and GGA of one second describe the same fix; the talker alternates GN / GB per
query. The NMEA here is written independently of lib/nmea.py on purpose.
"""

import datetime
import math
import random

M_PER_DEG_LAT = 111320.0


def checksum(body):
    """XOR of the characters between '$' and '*', as two upper-case hex digits."""
    cs = 0
    for ch in body.encode("ascii"):
        cs ^= ch
    return "%02X" % cs


def sentence(body):
    return "$%s*%s" % (body, checksum(body))


def ddmm(value, lat):
    """Degrees -> ('ddmm.mmmmm', 'N') for latitude, ('dddmm.mmmmm', 'E') for longitude."""
    hemi = ("N" if value >= 0 else "S") if lat else ("E" if value >= 0 else "W")
    a = abs(value)
    deg = int(a)
    minutes = (a - deg) * 60.0
    if round(minutes, 5) >= 60.0:
        deg, minutes = deg + 1, 0.0
    return ("%02d%08.5f" if lat else "%03d%08.5f") % (deg, minutes), hemi


class GnssScenario:
    def __init__(self, position, noise_m=3.0, cold_start_s=2.0, fake_fix_s=1.0, seed=1):
        self.lat0, self.lon0, self.alt0 = position
        self.noise_m = noise_m
        self.cold_start_s = cold_start_s
        self.fake_fix_s = fake_fix_s
        self.rng = random.Random(seed)
        self._epoch = None
        self._fix = None
        self._queries = {}

    def phase(self, t, antenna=False):
        """'none', 'fake' or 'fix' at t seconds after the receiver was switched on."""
        if antenna or t < self.cold_start_s:
            return "none"
        if t < self.cold_start_s + self.fake_fix_s:
            return "fake"
        return "fix"

    def fix(self, t, now, antenna=False):
        """The fix for the UTC second of `now` (a datetime): dict with phase, lat, lon, alt, nsat, hdop, utc."""
        key = (int(now.timestamp()), self.phase(t, antenna))
        if key == self._epoch:
            return self._fix
        ph = key[1]
        f = {"phase": ph, "utc": now.replace(microsecond=0), "lat": None, "lon": None, "alt": None, "nsat": 0,
             "hdop": 99.99}
        if ph == "fake":
            f.update(lat=self.lat0 + 0.05, lon=self.lon0 - 0.07, alt=0.0, nsat=0, hdop=0.0)
        elif ph == "fix":
            north = self.rng.gauss(0.0, self.noise_m)
            east = self.rng.gauss(0.0, self.noise_m)
            f.update(lat=self.lat0 + north / M_PER_DEG_LAT,
                     lon=self.lon0 + east / (M_PER_DEG_LAT * math.cos(math.radians(self.lat0))),
                     alt=self.alt0 + self.rng.gauss(0.0, 1.5 * self.noise_m),
                     nsat=self.rng.randint(6, 14), hdop=round(self.rng.uniform(0.6, 1.8), 1))
        self._epoch, self._fix = key, f
        return f

    def _talker(self, kind):
        n = self._queries.get(kind, 0)
        self._queries[kind] = n + 1
        return "GN" if n % 2 == 0 else "GB"

    def nmea(self, kind, t, now, antenna=False):
        """The sentences QGPSGNMEA="<kind>" returns (GSV: several); [] for an unknown kind."""
        f = self.fix(t, now, antenna)
        kind = kind.upper()
        if kind == "RMC":
            return [self._rmc(f, self._talker(kind))]
        if kind == "GGA":
            return [self._gga(f, self._talker(kind))]
        if kind == "GSA":
            return [self._gsa(f)]
        if kind == "GSV":
            return self._gsv(f)
        if kind == "VTG":
            return [sentence("GNVTG,0.00,T,,M,0.000,N,0.000,K,%s" % ("A" if f["lat"] is not None else "N"))]
        return []

    def _rmc(self, f, talker):
        if f["lat"] is None:
            return sentence("%sRMC,,V,,,,,,,,,,N,V" % talker)
        lat, ns = ddmm(f["lat"], True)
        lon, ew = ddmm(f["lon"], False)
        u = f["utc"]
        return sentence("%sRMC,%s.00,A,%s,%s,%s,%s,0.000,,%s,,,A,V" % (talker, u.strftime("%H%M%S"), lat, ns, lon, ew,
                                                                      u.strftime("%d%m%y")))

    def _gga(self, f, talker):
        if f["lat"] is None:
            return sentence("%sGGA,,,,,,0,00,99.99,,,,,," % talker)
        lat, ns = ddmm(f["lat"], True)
        lon, ew = ddmm(f["lon"], False)
        return sentence("%sGGA,%s.00,%s,%s,%s,%s,1,%02d,%.2f,%.1f,M,-20.0,M,," % (
            talker, f["utc"].strftime("%H%M%S"), lat, ns, lon, ew, f["nsat"], f["hdop"], f["alt"]))

    def _gsa(self, f):
        if f["lat"] is None or not f["nsat"]:
            return sentence("GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,4")
        sats = ",".join("%02d" % (i + 1) for i in range(min(f["nsat"], 12)))
        sats += "," * (12 - min(f["nsat"], 12))
        return sentence("GNGSA,A,3,%s,%.2f,%.2f,%.2f,4" % (sats, f["hdop"] * 1.4, f["hdop"], f["hdop"] * 1.1))

    def _gsv(self, f):
        n = f["nsat"]
        if not n:
            return [sentence("GBGSV,1,1,00,1")]
        total = (n + 3) // 4
        out = []
        for i in range(total):
            sats = []
            for k in range(i * 4, min(n, i * 4 + 4)):
                sats.append("%02d,%02d,%03d,%02d" % (k + 1, 15 + (k * 7) % 70, (k * 41) % 360, 30 + k % 15))
            out.append(sentence("GBGSV,%d,%d,%02d,%s,1" % (total, i + 1, n, ",".join(sats))))
        return out

    def qgpsloc(self, t, now, mode=2, antenna=False):
        """The +QGPSLOC line for `mode` (0: ddmm.mmmmN, 2: signed degrees), None while there is no fix."""
        f = self.fix(t, now, antenna)
        if f["lat"] is None:
            return None
        u = f["utc"]
        if mode == 2:
            pos = "%.5f,%.5f" % (f["lat"], f["lon"])
        else:
            lat, ns = ddmm(f["lat"], True)
            lon, ew = ddmm(f["lon"], False)
            pos = "%s%s,%s%s" % (lat[:-1], ns, lon[:-1], ew)
        return "+QGPSLOC: %s.000,%s,%.1f,%.1f,%d,0.00,0.0,0.0,%s,%02d" % (
            u.strftime("%H%M%S"), pos, f["hdop"], f["alt"], 3 if f["nsat"] >= 4 else 2, u.strftime("%d%m%y"),
            f["nsat"])


class GnssMixin:
    """QGPSCFG, QGPS, QGPSEND, QGPSGNMEA, QGPSLOC for ModemSim (the scenario is `self.gnss`)."""

    async def _at_qgpscfg(self, kind, args):
        if not args:
            self._respond(final=self._err(50))
        elif args[0] == "gnssconfig":
            if len(args) == 1:
                self._respond(['+QGPSCFG: "gnssconfig",%d' % self.gnssconfig])
            else:
                self.gnssconfig = int(args[1])
                self._respond()
        elif args[0] == "nmeasrc":
            if len(args) == 1:
                self._respond(['+QGPSCFG: "nmeasrc",%d' % self.nmeasrc])
            else:
                self.nmeasrc = int(args[1])
                self._respond()
        else:
            self._respond()

    async def _at_qgps(self, kind, args):
        if kind == "query":
            self._respond(["+QGPS: %d" % self.gnss_on])
        elif self.gnss_on:
            self._respond(final=self._err(504))
        else:
            await self._sleep(self._d("gnss_cmd"))
            self.gnss_on = True
            self.gnss_t = self._now()
            self._respond()

    async def _at_qgpsend(self, kind, args):
        if not self.gnss_on:
            self._respond(final=self._err(505))
        else:
            self.gnss_on = False
            self._respond()

    def _gnss_now(self):
        """UTC as the GNSS receiver reports it: the simulation's true time (modem_basic.SimTime), off by the
        gnss_time fault's offset while it is on."""
        offset = datetime.timedelta(seconds=self.faults.get("gnss_time", 0))
        return self.sim_time.utc() + offset

    def _gnss_t(self):
        return self._now() - self.gnss_t

    async def _at_qgpsgnmea(self, kind, args):
        if not self.gnss_on:
            self._respond(final=self._err(505))
        elif self.nmeasrc_required and not self.nmeasrc:
            self._respond(final=self._err(507))
        else:
            now = self._gnss_now()
            lines = self.gnss.nmea(args[0] if args else "", self._gnss_t(), now, "antenna" in self.faults)
            if not lines:
                self._respond(final=self._err(50))
            else:
                self._respond(["+QGPSGNMEA: " + s for s in lines])

    async def _at_qgpsloc(self, kind, args):
        if not self.gnss_on:
            self._respond(final=self._err(505))
            return
        now = self._gnss_now()
        line = self.gnss.qgpsloc(self._gnss_t(), now, int(args[0]) if args else 0, "antenna" in self.faults)
        if line is None:
            self._respond(final=self._err(516))
        else:
            self._respond([line])
