"""The modem simulator's general commands: CMEE, SIM, signal, registration, identities, CFUN, clocks, power-down.

The module's clock (AT+CCLK) is the network's time (NITZ) after a restart,
off by the simulator's `clock_error_s`; `AT+CCLK="yy/MM/dd,hh:mm:ss+zz"` sets it
(zz in quarter hours) until the next restart. The TLS side checks certificate
dates against it (modem_ssl.py).
"""

import datetime


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


class BasicMixin:
    """3GPP and Quectel general commands for ModemSim."""

    clock_error_s = 0.0

    def _clock_restart(self):
        self.clock_offset_s = float(self.clock_error_s)
        self.clock_zone = 32

    def module_utc(self):
        """What the module's clock says it is, in UTC."""
        return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.clock_offset_s)

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
        now = datetime.datetime.now(datetime.timezone.utc)
        self._respond(['+QLTS: "%s+32,0"' % now.strftime("%Y/%m/%d,%H:%M:%S")])

    async def _at_cclk(self, kind, args):
        if kind == "set":
            try:
                when, zone = parse_cclk(args[0] if args else "")
            except ValueError:
                self._respond(final=self._err(50))
                return
            self.clock_offset_s = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
            self.clock_zone = zone
            self._respond()
            return
        local = self.module_utc() + datetime.timedelta(minutes=15 * self.clock_zone)
        self._respond(['+CCLK: "%s%+03d"' % (local.strftime("%y/%m/%d,%H:%M:%S"), self.clock_zone)])

    async def _at_qpowd(self, kind, args):
        self._respond()
        await self._sleep(self._d("cfun"))
        self._power_down()
