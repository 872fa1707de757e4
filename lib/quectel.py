"""Quectel EC200U/EC800M-class LTE module: bring-up, TCP sockets, GNSS and a recovery ladder.

A driver for another family (SIMCom A76xx) offers the same public methods:
start, ready, imei, iccid, signal, network_time, open_socket, gnss_start,
gnss_nmea, gnss_loc, recover, recovered, ladder, stats.

Recovery ladder: each call of recover() after a failure climbs one rung:
socket (the caller reopens) -> pdp (QIDEACT + QIACT) -> cfun (CFUN 0/1) ->
power (reset pin, PWRKEY or CFUN=1,1, then a full start) -> mcu (on_mcu_reset).
A known-lost PDP context starts at the pdp rung; a rung whose command gets
no answer jumps to the power rung. recovered() resets the ladder. Waits
before each rung grow exponentially with jitter, up to backoff_max_ms.
"""

import asyncio
import random

import quectel_gnss
from atengine import AT, ATEngineError, ATError, ATTimeout
from mpcompat import ticks_diff, ticks_ms
from quectel_socket import ModemError, Socket, open_tcp  # noqa: F401  (re-exported)

RUNGS = ("socket", "pdp", "cfun", "power", "mcu")
_UNANSWERED_DEAD = 2  # commands in a row without any answer before a failed AT probe means a dead module
_SIM_BUSY = (10, 13, 14)  # not inserted yet / failure / busy: all seen for a while after boot

try:
    _sleep_ms = asyncio.sleep_ms
except AttributeError:  # CPython

    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


def default_timeouts():
    """Time limits in ms (vendor figures); tests pass smaller ones."""
    return {"cmd": 5000, "probe": 500, "boot": 12000, "sim": 20000, "reg": 120000, "qiact": 150000,
            "qideact": 40000, "qiclose": 10000, "qiopen": 150000, "cfun": 15000, "read": 60000, "poll": 1000,
            "pulse": 700, "reset_pulse": 300, "power_off": 3000}


def parse_csq(lines):
    """'+CSQ: 23,99' -> 23; None for 99 (unknown) or no answer."""
    for line in lines:
        if line.startswith("+CSQ:"):
            try:
                rssi = int(line[5:].split(",")[0])
            except ValueError:
                return None
            return None if rssi == 99 else rssi
    return None


def parse_cereg(lines):
    """'+CEREG: 0,1' -> 1 (the registration stat); None if absent."""
    for line in lines:
        if line.startswith("+CEREG:"):
            f = line[7:].split(",")
            try:
                return int(f[1] if len(f) > 1 else f[0])
            except ValueError:
                return None
    return None


def parse_qlts(lines):
    """'+QLTS: "2026/09/11,14:22:25+32,0"' -> (2026, 9, 11, 14, 22, 25) UTC; None if empty or malformed."""
    for line in lines:
        if line.startswith("+QLTS:"):
            body = line[6:].strip().strip('"')
            try:
                date, _, clock = body.partition(",")
                y, mo, d = (int(x) for x in date.split("/"))
                h, mi, s = (int(x) for x in clock[:8].split(":"))
            except ValueError:
                return None
            if y < 2000 or not 1 <= mo <= 12 or not 1 <= d <= 31:
                return None
            return (y, mo, d, h, mi, s)
    return None


def parse_imei(lines):
    for line in lines:
        t = line[6:].strip() if line.startswith("+CGSN:") else line
        if len(t) >= 14 and t.isdigit():
            return t
    return None


def parse_iccid(lines):
    for line in lines:
        if line.startswith("+QCCID:"):
            return line[7:].strip()
    return None


class Quectel:
    """The modem driver; every public coroutine is bounded by the limits in `timeouts`."""

    def __init__(self, uart, *, apn="", apn_user="", apn_pass="", gnssconfig=1, pwrkey=None, reset=None, log=None,
                 on_mcu_reset=None, ctx=1, timeouts=None, backoff_base_ms=1000, backoff_max_ms=600000,
                 send_retries=4, send_backoff_ms=200):
        self.at = AT(uart, log=log)
        self.at.on_rdy = self._on_rdy
        self.at.on_urc("+QIURC:", self._on_qiurc)
        self.apn, self.apn_user, self.apn_pass = apn, apn_user, apn_pass
        self.gnssconfig = gnssconfig
        self.pwrkey = pwrkey  # objects with on()/off(); falsy (None, or a board's absent pin) when not wired
        self.reset = reset
        self.log = log
        self.on_mcu_reset = on_mcu_reset
        self.ctx = ctx
        self.timeouts = default_timeouts()
        if timeouts:
            self.timeouts.update(timeouts)
        self.backoff_base_ms = backoff_base_ms
        self.backoff_max_ms = backoff_max_ms
        self.send_retries = send_retries
        self.send_backoff_ms = send_backoff_ms
        self.imei = None
        self.iccid = None
        self.ladder = {"socket": 0, "pdp": 0, "cfun": 0, "power": 0, "mcu": 0, "fixed_by": None}
        self._stats = {"starts": 0, "reinit": 0, "rdy_unexpected": 0, "send_fail": 0, "bytes_tx": 0, "bytes_rx": 0,
                       "opens": 0, "open_fail": 0, "socket_closed": 0, "pdp_lost": 0, "pdp_errors": 0,
                       "power_cycles": 0, "recoveries": 0, "gnss_cfg_refused": 0}
        self._sockets = {}
        self._stale = set()
        self._up = False
        self._pdp = False
        self._need_reinit = False
        self._booting = False
        self._gnss_wanted = False
        self._gnss_on = False
        self._nmeasrc = False
        self._attempts = 0  # consecutive recover() calls without success: sets the back-off
        self._rung = 0  # last rung climbed (1..5)
        self._init_lock = asyncio.Lock()

    # -- state ---------------------------------------------------------------------
    @property
    def ready(self):
        """Up, re-initialised after any restart, with an active PDP context."""
        return self._up and self._pdp and not self._need_reinit

    @property
    def stats(self):
        d = dict(self.at.stats)
        d.update(self._stats)
        return d

    def _info(self, msg, *args):
        if self.log:
            self.log.info(msg, *args)

    def _warn(self, msg, *args):
        if self.log:
            self.log.warning(msg, *args)

    # -- URCs (from the AT reader: quick, no I/O) -----------------------------------------
    def _on_rdy(self):
        if not self._booting:
            self._stats["rdy_unexpected"] += 1
            self._warn("modem restarted by itself (RDY): re-initialising before further use")
        self._need_reinit = True
        self._pdp = False
        self._gnss_on = False
        self._nmeasrc = False
        self._lose_sockets()
        self._stale.clear()  # a restarted module has every id free

    def _on_qiurc(self, line):
        kind, _, arg = line[7:].strip().partition(",")
        kind = kind.strip('"')
        if kind == "recv" or kind == "closed":
            s = self._sockets.get(int(arg.split(",")[0]))
            if s is None:
                return
            if kind == "recv":
                s._on_recv()
            else:
                self._stats["socket_closed"] += 1
                s._on_closed()
        elif kind == "pdpdeact":
            self._stats["pdp_lost"] += 1
            self._warn("PDP context %s deactivated by the network", arg)
            self._pdp = False
            self._lose_sockets()

    def _lose_sockets(self):
        for s in self._sockets.values():
            s._on_lost()
            self._stale.add(s.id)
        self._sockets.clear()

    # -- bring-up ----------------------------------------------------------------------
    async def start(self):
        """Power on (if needed), set up, wait for SIM and network, activate PDP; ModemError on failure."""
        async with self._init_lock:
            await self._start(None)

    async def _ensure(self):
        # Re-initialise after an unexpected restart before anything else talks to the module.
        if self._need_reinit and self._up:
            async with self._init_lock:
                if self._need_reinit and self._up:
                    await self._start(None)

    async def _start(self, since_rdy):
        self.at.start()
        reinit = self._need_reinit and self._up
        self._stats["starts"] += 1
        self._booting = True
        try:
            await self._power_on(since_rdy)
            await self._setup()
        except ModemError:
            self._up = False  # half set up: the next start() does it all again
            raise
        except ATEngineError as e:
            self._up = False
            raise ModemError("bring-up: %s" % e)
        finally:
            self._booting = False
        if reinit:
            self._stats["reinit"] += 1
        self._info("modem up: IMEI %s, PDP context %d active", self.imei, self.ctx)

    async def _probe(self):
        try:
            await self.at.cmd("AT", self.timeouts["probe"])
            return True
        except ATEngineError:
            return False

    async def _pulse(self, pin, ms):
        pin.on()
        await _sleep_ms(ms)
        pin.off()

    async def _power_on(self, since_rdy):
        """Return once the module answers AT. since_rdy: RDY count before a reset we caused (None: none)."""
        t = self.timeouts
        if since_rdy is None:
            since_rdy = self.at.stats["rdy"]  # before the probe: a RDY may interrupt it
            if await self._probe():
                return
            if self.pwrkey and self.at.stats["rdy"] == since_rdy:
                self._info("modem silent: PWRKEY pulse")
                await self._pulse(self.pwrkey, t["pulse"])
        t0 = ticks_ms()
        while True:
            left = t["boot"] - ticks_diff(ticks_ms(), t0)
            if left <= 0:
                raise ModemError("no answer from the module within %d ms" % t["boot"])
            await self.at.wait_rdy(since_rdy, min(left, 1000))
            if await self._probe():
                return

    async def _setup(self):
        t = self.timeouts
        self._need_reinit = False  # a RDY from here on means it restarted again
        await self.at.cmd("ATE0", t["cmd"])
        await self.at.cmd("AT+CMEE=1", t["cmd"])
        await self._wait_sim()
        self.imei = parse_imei(await self.at.cmd("AT+CGSN", t["cmd"])) or self.imei
        self.iccid = parse_iccid(await self.at.cmd("AT+QCCID", t["cmd"])) or self.iccid
        await self._attach()
        if self._gnss_wanted:
            try:
                await quectel_gnss.start(self)
            except ATError as e:
                self._warn("GNSS restart refused: %s", e)
        if self._need_reinit:
            raise ModemError("module restarted during bring-up")
        self._up = True

    async def _wait_sim(self):
        t = self.timeouts
        t0 = ticks_ms()
        while True:
            try:
                for line in await self.at.cmd("AT+CPIN?", t["cmd"]):
                    if line.startswith("+CPIN:"):
                        state = line[6:].strip()
                        if state == "READY":
                            return
                        raise ModemError("SIM not usable: %s" % state)
            except ATError as e:
                if e.code is not None and e.code not in _SIM_BUSY:
                    raise ModemError("SIM error %d" % e.code)
            if ticks_diff(ticks_ms(), t0) >= t["sim"]:
                raise ModemError("SIM not ready within %d ms" % t["sim"])
            await _sleep_ms(min(t["poll"], 500))

    async def _attach(self):
        """Registration (CEREG stat 1 or 5), APN, PDP context."""
        t = self.timeouts
        t0 = ticks_ms()
        while True:
            stat = parse_cereg(await self.at.cmd("AT+CEREG?", t["cmd"]))
            if stat in (1, 5):
                break
            if ticks_diff(ticks_ms(), t0) >= t["reg"]:
                raise ModemError("not registered within %d ms (stat %s)" % (t["reg"], stat))
            await _sleep_ms(t["poll"])
        auth = 1 if self.apn_user else 0
        await self.at.cmd('AT+QICSGP=%d,1,"%s","%s","%s",%d' % (self.ctx, self.apn, self.apn_user, self.apn_pass,
                                                               auth), t["cmd"])
        await self._activate_pdp()

    async def _activate_pdp(self):
        t = self.timeouts
        err = None
        for _ in range(3):
            others = []
            for line in await self.at.cmd("AT+QIACT?", t["cmd"]):
                if line.startswith("+QIACT:"):
                    f = line[7:].split(",")
                    if f[0].strip() == str(self.ctx) and f[1:2] == ["1"]:
                        self._pdp = True
                        return
                    others.append(f[0].strip())
            try:
                await self.at.cmd("AT+QIACT=%d" % self.ctx, t["qiact"])
                self._pdp = True
                return
            except ATError as e:
                # e.g. 572 (another context active): deactivate and try again
                err = e
                self._stats["pdp_errors"] += 1
                for c in others + [str(self.ctx)]:
                    try:
                        await self.at.cmd("AT+QIDEACT=%s" % c, t["qideact"])
                    except ATError:
                        pass
        raise ModemError("PDP activation failed: %s" % err)

    # -- information -------------------------------------------------------------------
    async def signal(self):
        """CSQ rssi 0..31, None when unknown (99)."""
        await self._ensure()
        return parse_csq(await self.at.cmd("AT+CSQ", self.timeouts["cmd"]))

    async def network_time(self):
        """(Y, M, D, h, m, s) UTC from AT+QLTS=1, or None when the network gave none."""
        await self._ensure()
        try:
            return parse_qlts(await self.at.cmd("AT+QLTS=1", self.timeouts["cmd"]))
        except ATError:
            return None

    # -- sockets -----------------------------------------------------------------------
    async def open_socket(self, host, port, timeout_ms=None):
        """A connected TCP Socket to host:port; ModemError when the module cannot open it."""
        await self._ensure()
        if not self._pdp:
            raise ModemError("no active PDP context")
        return await open_tcp(self, host, port, timeout_ms or self.timeouts["qiopen"])

    async def _qiclose(self, sid):
        try:
            await self.at.cmd("AT+QICLOSE=%d" % sid, self.timeouts["qiclose"])
        except ATError:
            pass  # already free
        self._stale.discard(sid)

    # -- GNSS --------------------------------------------------------------------------
    async def gnss_start(self):
        """Constellation config (tolerated if unsupported) and AT+QGPS=1 (already on is fine)."""
        await self._ensure()
        self._gnss_wanted = True
        await quectel_gnss.start(self)

    async def gnss_nmea(self, kinds=("RMC", "GGA")):
        """Raw NMEA sentences for `kinds` through AT+QGPSGNMEA (parsing is the caller's)."""
        await self._ensure()
        return await quectel_gnss.nmea(self, kinds)

    async def gnss_loc(self):
        """AT+QGPSLOC=2 as a dict, None without a fix."""
        await self._ensure()
        return await quectel_gnss.loc(self)

    # -- recovery ladder ---------------------------------------------------------------
    def backoff_ms(self, attempt):
        """Wait before recovery attempt `attempt` (1, 2, ...): exponential, capped, with jitter in [d/2, d]."""
        d = min(self.backoff_max_ms, self.backoff_base_ms << min(attempt - 1, 20))
        return d // 2 + (random.getrandbits(16) * (d - d // 2) >> 16)

    async def recover(self):
        """After a failure: back off, then climb one rung (see the module doc). Never raises a modem error."""
        self._attempts += 1
        self._stats["recoveries"] += 1
        rung = min(self._rung + 1, 5)
        if not self._pdp and self._up and not self._need_reinit and rung < 2:
            rung = 2  # the context is known to be gone: reactivating it is the first useful step
        await _sleep_ms(self.backoff_ms(self._attempts))
        if rung < 4 and self.at.unanswered >= _UNANSWERED_DEAD and not await self._probe():
            # commands go unanswered and so does a bare AT: the lower rungs would only wait out their timeouts
            # (QIDEACT's is 40 s); only a power cycle helps (vendor policy)
            self._warn("module answers nothing, not even AT: power cycle")
            rung = 4
        self._rung = rung
        name = RUNGS[rung - 1]
        self.ladder[name] += 1
        self._info("recovery attempt %d: rung %s", self._attempts, name)
        try:
            await self._ensure()
            if rung == 2:
                await self._reactivate_pdp()
            elif rung == 3:
                await self._cfun_cycle()
            elif rung == 4:
                await self._power_cycle()
            elif rung == 5 and self.on_mcu_reset is not None:
                self.on_mcu_reset()
        except ATTimeout as e:
            if rung in (2, 3):
                # The module does not answer at all: only a power cycle helps (vendor policy).
                self._warn("rung %s got no answer (%s): power cycle", name, e)
                self._rung = 4
                self.ladder["power"] += 1
                name = "power"
                try:
                    await self._power_cycle()
                except (ModemError, ATEngineError, OSError) as e2:
                    self._warn("power cycle failed: %s", e2)
            else:
                self._warn("rung %s failed: %s", name, e)
        except (ModemError, ATEngineError, OSError) as e:
            self._warn("rung %s failed: %s", name, e)
        return name

    def recovered(self):
        """Report a success after failures: remember the rung that fixed it and reset the ladder."""
        if self._attempts:
            self.ladder["fixed_by"] = RUNGS[self._rung - 1] if self._rung else None
            self._info("link recovered at rung %s after %d attempt(s)", self.ladder["fixed_by"], self._attempts)
        self._attempts = 0
        self._rung = 0

    async def _reactivate_pdp(self):
        self._lose_sockets()
        self._pdp = False
        try:
            await self.at.cmd("AT+QIDEACT=%d" % self.ctx, self.timeouts["qideact"])
        except ATError:
            pass  # not active is fine
        await self._activate_pdp()

    async def _cfun_cycle(self):
        t = self.timeouts
        self._lose_sockets()
        self._pdp = False
        await self.at.cmd("AT+CFUN=0", t["cfun"])
        await self.at.cmd("AT+CFUN=1", t["cfun"])
        await self._wait_sim()
        await self._attach()

    async def _power_cycle(self):
        t = self.timeouts
        self._lose_sockets()
        self._pdp = False
        self._up = False
        self._stats["power_cycles"] += 1
        since = self.at.stats["rdy"]
        async with self._init_lock:
            self._booting = True  # the RDY that follows is ours
            try:
                if self.reset:
                    await self._pulse(self.reset, t["reset_pulse"])
                elif self.pwrkey:
                    await self._pulse(self.pwrkey, t["pulse"])  # a pulse while on powers the module down
                    try:
                        await self.at.wait_urc("POWERED DOWN", t["power_off"])
                    except ATTimeout:
                        pass
                    since = self.at.stats["rdy"]
                    await self._pulse(self.pwrkey, t["pulse"])
                else:
                    try:
                        await self.at.cmd("AT+CFUN=1,1", t["cfun"])
                    except ATEngineError:
                        pass
            except BaseException:
                self._booting = False
                raise
            await self._start(since)
