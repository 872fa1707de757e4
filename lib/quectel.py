"""Quectel EC200U/EC800M-class LTE module: bring-up (one owner, a state machine), TCP sockets, GNSS.

A driver for another family (SIMCom A76xx) offers the same public methods:
start, ready, state, imei, iccid, signal, network_time, open_socket, gnss_start,
gnss_nmea, gnss_loc, failure_class, recover, recovered, ladder, stats.

Bring-up states: off -> starting -> up; an unexpected RDY (the module restarted
by itself) -> restarted, and the next user re-initialises it. Every procedure of
several commands (start, re-initialisation, recovery rungs) runs under one lock,
so only one owner talks to the module at a time; everything else waits for it,
bounded by the "bringup_wait" time limit. After any RDY every volatile setting is
applied again (echo, CMEE, the context's APN, the GNSS constellation and NMEA
source), and the PDP context is activated only once the module is registered.
Failure classes and the recovery ladder: lib/quectel_ladder.py.
"""

import asyncio
import random

import quectel_bringup
import quectel_gnss
import quectel_ladder
from atengine import AT, ATEngineError, ATError, ATTimeout  # noqa: F401  (re-exported)
from quectel_ladder import RUNGS  # noqa: F401  (re-exported)
from quectel_parse import parse_cereg, parse_csq, parse_iccid, parse_imei, parse_qlts  # noqa: F401  (re-exported)
from quectel_socket import PEER_CODES, ModemError, NetworkError, ServerError, Socket, open_tcp  # noqa: F401


try:
    _sleep_ms = asyncio.sleep_ms
    _wait_for_ms = asyncio.wait_for_ms
except AttributeError:  # CPython

    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)

    def _wait_for_ms(aw, ms):
        return asyncio.wait_for(aw, ms / 1000)


def default_timeouts():
    """Time limits in ms (vendor figures); tests pass smaller ones."""
    return {"cmd": 5000, "probe": 500, "boot": 12000, "sim": 20000, "reg": 120000, "qiact": 150000,
            "qideact": 40000, "qiclose": 10000, "qiopen": 150000, "cfun": 15000, "read": 60000, "poll": 1000,
            "pulse": 700, "reset_pulse": 300, "power_off": 3000, "bringup_wait": 60000}


class Quectel:
    """The modem driver; every public coroutine is bounded by the limits in `timeouts`."""

    def __init__(self, uart, *, apn="", apn_user="", apn_pass="", gnssconfig=1, pwrkey=None, reset=None, log=None,
                 on_mcu_reset=None, ctx=1, timeouts=None, backoff_base_ms=1000, backoff_max_ms=600000,
                 server_backoff_max_ms=900000, send_retries=4, send_backoff_ms=200):
        self.at = AT(uart, log=log)
        self.at.secret(apn_pass)  # never in a log line or an error text
        self.at.on_rdy = self._on_rdy
        self.at.on_urc("+QIURC:", self._on_qiurc)
        self.at.on_urc("+QSSLURC:", self._on_qiurc)
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
        self.server_backoff_max_ms = server_backoff_max_ms
        self.send_retries = send_retries
        self.send_backoff_ms = send_backoff_ms
        self.imei = None
        self.iccid = None
        self.state = "off"  # off | starting | up | restarted (RDY seen: re-initialise before use)
        self.ladder = {"socket": 0, "pdp": 0, "cfun": 0, "power": 0, "mcu": 0, "fixed_by": None}
        self._stats = {"starts": 0, "reinit": 0, "rdy_unexpected": 0, "send_fail": 0, "bytes_tx": 0, "bytes_rx": 0,
                       "opens": 0, "open_fail": 0, "socket_closed": 0, "pdp_lost": 0, "pdp_errors": 0,
                       "power_cycles": 0, "recoveries": 0, "gnss_cfg_refused": 0, "server_fail": 0}
        self._sockets = {}
        self._stale = set()  # TCP ids to QICLOSE before reuse
        self._ssl_stale = set()  # TLS ids to QSSLCLOSE before reuse
        self.tls = None  # the SSL context's settings (quectel_ssl.configure), applied again after every RDY
        self._tls_gen = -1  # the RDY count when the SSL context was last configured
        self._up = False
        self._pdp = False
        self._need_reinit = False
        self._booting = False
        self._gen = 0  # RDYs seen: a procedure that started before a restart must not go on after it
        self._gnss_wanted = False
        self._gnss_on = False
        self._nmeasrc = False
        self._nmeasrc_needed = False  # the module wanted QGPSCFG="nmeasrc",1 once: set it after every restart
        self._attempts = 0  # consecutive recover() calls without success: sets the back-off
        self._server_attempts = 0  # consecutive server failures: the server back-off
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
        self._gen += 1
        if not self._booting:
            self._stats["rdy_unexpected"] += 1
            self._warn("modem restarted by itself (RDY): re-initialising before further use")
            if self._up:
                self.state = "restarted"
        self._need_reinit = True
        self._pdp = False
        self._gnss_on = False
        self._nmeasrc = False
        self._lose_sockets()
        self._stale.clear()  # a restarted module has every id free
        self._ssl_stale.clear()

    def _on_qiurc(self, line):
        # +QIURC: "recv",<id> for TCP sockets; +QSSLURC: "recv",<id> for TLS ones (the same id space)
        tls = line.startswith("+QSSLURC:")
        kind, _, arg = line[9 if tls else 7:].strip().partition(",")
        kind = kind.strip('"')
        if kind == "recv" or kind == "closed":
            s = self._sockets.get(int(arg.split(",")[0]))
            if s is None or s.tls != tls:
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
            if s.opening:
                self.at.abandon("+QIOPEN: %d," % s.id)  # a module may never report this open now
            s._on_lost()
            s._stale.add(s.id)
        self._sockets.clear()

    # -- one owner -----------------------------------------------------------------------
    async def _exclusive(self, fn, *args):
        """Run the procedure fn(*args) as the only one talking to the module; others wait, bounded."""
        lock = self._init_lock
        if lock.locked():
            try:
                await _wait_for_ms(lock.acquire(), self.timeouts["bringup_wait"])
            except asyncio.TimeoutError:
                raise ModemError("module busy (bring-up or recovery) for %d ms" % self.timeouts["bringup_wait"])
        else:
            await lock.acquire()
        try:
            return await fn(*args)
        finally:
            lock.release()

    async def _ensure(self):
        # Wait for a bring-up or recovery in progress; re-initialise after an unexpected restart.
        if self._init_lock.locked() or (self._need_reinit and self._up):
            await self._exclusive(self._reinit)

    async def _reinit(self):
        if self._need_reinit and self._up:
            await self._start(None)

    # -- bring-up ----------------------------------------------------------------------
    async def start(self):
        """Power on (if needed), set up, wait for SIM and network, activate PDP; ModemError on failure."""
        await self._exclusive(self._start, None)

    async def _start(self, since_rdy):
        self.at.start()
        reinit = self._need_reinit and self._up
        self._stats["starts"] += 1
        self.state = "starting"
        self._booting = True
        try:
            await self._power_on(since_rdy)
            self._booting = False  # a RDY from here on is a restart during bring-up
            await self._setup()
        except ModemError:
            self._up = False  # half set up: the next start() does it all again
            self.state = "off"
            raise
        except ATEngineError as e:
            self._up = False
            self.state = "off"
            raise ModemError("bring-up: %s" % e)
        finally:
            self._booting = False
        if reinit:
            self._stats["reinit"] += 1
        self.state = "up"
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
        await quectel_bringup.power_on(self, since_rdy)

    async def _setup(self):
        await quectel_bringup.setup(self)

    async def _wait_sim(self):
        await quectel_bringup.wait_sim(self)

    async def _attach(self, gen):
        await quectel_bringup.attach(self, gen)

    async def _network_ok(self):
        return await quectel_bringup.network_ok(self)

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

    async def set_clock(self, utc):
        """Set the module's clock to a UTC (Y, M, D, h, m, s): TLS checks certificate dates against it."""
        await self._ensure()
        import quectel_ssl

        await quectel_ssl.set_clock(self, utc)

    # -- sockets -----------------------------------------------------------------------
    async def open_socket(self, host, port, timeout_ms=None, label="peer", tls=False):
        """A connected TCP Socket to host:port; with tls, a TLS one (quectel_ssl, the SSL context in `self.tls`).

        ServerError when the peer refuses, does not answer or does not resolve while the network is healthy
        (for TLS also: every certificate failure, module error 566); NetworkError when the context is gone;
        ModemError for anything else the module refuses.
        """
        await self._ensure()
        if not self._pdp:
            raise NetworkError("no active PDP context")
        try:
            if tls:
                import quectel_ssl

                return await quectel_ssl.open_ssl(self, host, port, timeout_ms or self.timeouts["qiopen"], label)
            return await open_tcp(self, host, port, timeout_ms or self.timeouts["qiopen"], label)
        except ModemError as e:
            if e.code not in PEER_CODES or isinstance(e, NetworkError):
                if e.code in (561, 570, 573):
                    self._pdp = False
                    raise NetworkError(str(e), e.code)
                raise
            if await self._network_ok():
                raise ServerError(str(e), e.code)
            self._pdp = False
            raise NetworkError("%s; the network is not usable" % e, e.code)

    async def _close_id(self, sid):
        """Release a stale socket id with its kind's close command (QICLOSE or QSSLCLOSE)."""
        for stale, cmd in ((self._stale, "AT+QICLOSE=%d"), (self._ssl_stale, "AT+QSSLCLOSE=%d")):
            if sid in stale:
                try:
                    await self.at.cmd(cmd % sid, self.timeouts["qiclose"])
                except ATError:
                    pass  # already free
                stale.discard(sid)

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

    # -- failures and recovery (lib/quectel_ladder.py) ------------------------------------
    def failure_class(self, e):
        """'server', 'network', 'module' or None for an exception from this driver."""
        return quectel_ladder.failure_class(e)

    def backoff_ms(self, attempt, cap_ms=None):
        """Wait before attempt `attempt` (1, 2, ...): exponential, capped, with jitter in [d/2, d]."""
        cap = self.backoff_max_ms if cap_ms is None else cap_ms
        d = min(cap, self.backoff_base_ms << min(attempt - 1, 20))
        return d // 2 + (random.getrandbits(16) * (d - d // 2) >> 16)

    async def recover(self, cause=None):
        """After a failure of class `cause`: back off and act (quectel_ladder). Never raises a modem error."""
        return await quectel_ladder.recover(self, cause)

    def recovered(self):
        """Report a success after failures: remember the rung that fixed it and reset the ladder."""
        quectel_ladder.recovered(self)

    async def _power_cycle(self):
        await quectel_ladder.power_cycle(self)
