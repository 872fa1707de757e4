"""The modem simulator's general commands: CMEE, SIM, signal, registration, identities, CFUN, clocks, power-down.

The module's clock (AT+CCLK) is the network's time (NITZ) after a restart,
off by the simulator's `clock_error_s`; `AT+CCLK="yy/MM/dd,hh:mm:ss+zz"` sets it
(zz in quarter hours) until the next restart. The TLS side checks certificate
dates against it (modem_ssl.py).

The network's time (and the GNSS receiver's, modem_gnss.py) is the simulation's true
time (`SimTime`), which may run `time_scale` times faster than the host's clock and
jump ahead (`advance`), as the meter simulator's does: days pass in minutes.
"""

import datetime
import threading
import time


def parse_cclk(text):
    """'26/08/07,13:54:02+32' -> (UTC datetime, zone in quarter hours); ValueError when malformed."""
    date, _, rest = text.partition(",")
    clock, zone = rest[:8], rest[8:]
    if len(zone) < 2 or zone[0] not in "+-":
        raise ValueError("no zone in %r" % text)
    y, mo, d = (int(x) for x in date.split("/"))
    h, mi, sec = (int(x) for x in clock.split(":"))
    q = int(zone)
    local = datetime.datetime(y + 2000 if y < 100 else y, mo, d, h, mi, sec, tzinfo=datetime.timezone.utc)
    return local - datetime.timedelta(minutes=15 * q), q


class SimTime:
    """The simulation's true UTC: `t0 + (host - h0) * scale + advanced`, from the host's clock."""

    def __init__(self, scale=1.0):
        self._lock = threading.Lock()
        self.h0 = self.t0 = time.time()
        self.scale = float(scale)

    def now(self):
        """True UTC, Unix seconds (float)."""
        with self._lock:
            return self.t0 + (time.time() - self.h0) * self.scale

    def utc(self):
        return datetime.datetime.fromtimestamp(self.now(), datetime.timezone.utc)

    def set(self, utc, scale=None):
        """From now on true time is `utc` and runs `scale` (unchanged when None) times faster than the host's."""
        with self._lock:
            self.h0, self.t0 = time.time(), float(utc)
            if scale is not None:
                self.scale = float(scale)

    def set_scale(self, scale):
        self.set(self.now(), scale)

    def advance(self, seconds):
        """Jump true time ahead by `seconds`."""
        with self._lock:
            self.t0 += float(seconds)

    def follow(self, true_utc, scale):
        """Run at `scale` from the value of another clock (`true_utc()`), read at this very moment."""
        with self._lock:
            a = time.time()
            t = true_utc()
            b = time.time()
            self.h0, self.t0, self.scale = (a + b) / 2, float(t), float(scale)


class BasicMixin:
    """3GPP and Quectel general commands for ModemSim."""

    clock_error_s = 0.0

    def _clock_restart(self):
        self.clock_offset_s = float(self.clock_error_s)
        self.clock_zone = 32

    def module_utc(self):
        """What the module's clock says it is, in UTC."""
        return self.sim_time.utc() + datetime.timedelta(seconds=self.clock_offset_s)

    # -- general commands -------------------------------------------------------------------------
    async def _at_cmee(self, kind, args):
        if kind == "query":
            self._respond(["+CMEE: %d" % self.cmee])
        else:
            self.cmee = int(args[0]) if args else 0
            self._respond()

    async def _at_qurccfg(self, kind, args):
        self._respond()

    async def _at_cpin(self, kind, args):
        since = self._now() - self.boot_t - self._d("boot")
        busy = self._d("cpin_busy")
        if since < busy:
            self._respond(final=self._err(10 if since < busy / 3 else 14))
        else:
            self._respond(["+CPIN: READY"])

    async def _at_csq(self, kind, args):
        self._respond(["+CSQ: %d,99" % (self.csq if self.cfun == 1 else 99)])

    def _reg_stat(self):
        if self.cfun != 1:
            return 0
        return 1 if self._now() >= self.reg_t else 2

    async def _at_cereg(self, kind, args):
        self._respond(["+CEREG: 0,%d" % self._reg_stat()] if kind == "query" else [])

    async def _at_cgreg(self, kind, args):
        self._respond(["+CGREG: 0,%d" % self._reg_stat()] if kind == "query" else [])

    async def _at_creg(self, kind, args):
        self._respond(["+CREG: 0,%d" % self._reg_stat()] if kind == "query" else [])

    async def _at_cgsn(self, kind, args):
        self._respond([self.imei])

    _at_gsn = _at_cgsn

    async def _at_qccid(self, kind, args):
        self._respond(["+QCCID: %s" % self.iccid])

    async def _at_cimi(self, kind, args):
        self._respond(["460001234567890"])

    async def _at_cfun(self, kind, args):
        if kind == "query":
            self._respond(["+CFUN: %d" % self.cfun])
            return
        fun = int(args[0]) if args else 1
        if fun == 1 and len(args) > 1 and args[1] == "1":
            self._respond()
            await self._sleep(self._d("cfun"))
            self._reboot()
            return
        await self._sleep(self._d("cfun"))
        if fun == 0 or fun == 4:
            self._drop_sockets(urc=False)
            self.pdp = "inactive"
            self.cfun = fun
            self._cfun0 = True
            self._respond()
        elif fun == 1:
            was = self.cfun
            self.cfun = 1
            if was != 1:
                self.reg_t = self._now() + self._d("reg") / 3
                if self._cfun0:
                    self.faults.pop("stack_degraded", None)  # a radio restart revives the IP stack
            self._respond()
            if was != 1:
                self._urc("+CPIN: READY")
        else:
            self._respond(final=self._err(50))

    async def _at_qlts(self, kind, args):
        now = self.sim_time.utc()
        self._respond(['+QLTS: "%s+32,0"' % now.strftime("%Y/%m/%d,%H:%M:%S")])

    async def _at_cclk(self, kind, args):
        if kind == "set":
            try:
                when, zone = parse_cclk(args[0] if args else "")
            except ValueError:
                self._respond(final=self._err(50))
                return
            self.clock_offset_s = (when - self.sim_time.utc()).total_seconds()
            self.clock_zone = zone
            self._respond()
            return
        local = self.module_utc() + datetime.timedelta(minutes=15 * self.clock_zone)
        self._respond(['+CCLK: "%s%+03d"' % (local.strftime("%y/%m/%d,%H:%M:%S"), self.clock_zone)])

    async def _at_qpowd(self, kind, args):
        self._respond()
        await self._sleep(self._d("cfun"))
        self._power_down()
