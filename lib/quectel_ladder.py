"""Failure classes and the recovery ladder of the Quectel driver: which symptom leads to which module action.

Every failure is put in one class before anything is done about it:

- server: the server is unreachable, refuses the connection, closes it, or refuses
  MQTT, while the network and the module are healthy. Nothing is done to the
  module (GSMA TS.34: no module restart or re-attach because an application
  server is unreachable): the socket is retried with exponential backoff and
  jitter up to `server_backoff_max_ms`.
- network: not registered, PDP context lost (+QIURC "pdpdeact") or refused. The
  ladder climbs the PDP and CFUN rungs, no further.
- module: AT commands get no final result. A module that does not even answer a
  bare AT goes straight to the power rung.
- None (anything else): the ladder climbs one rung per failure, socket -> pdp ->
  cfun -> power -> mcu.

Every multi-command step runs under the driver's bring-up lock, so recovery and
re-initialisation never talk to the module at the same time.
"""

import asyncio

from atengine import ATEngineError, ATError, ATTimeout
from quectel_socket import ModemError, NetworkError, ServerError

RUNGS = ("socket", "pdp", "cfun", "power", "mcu")
SERVER = "server"
NETWORK = "network"
MODULE = "module"
_UNANSWERED_DEAD = 2  # commands in a row without any answer before a failed AT probe means a dead module
_NETWORK_TOP = 3  # a lost network climbs no higher than the cfun rung

try:
    _sleep_ms = asyncio.sleep_ms
except AttributeError:  # CPython

    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


def failure_class(e):
    """The class of a driver failure: SERVER, NETWORK, MODULE or None (unknown: climb the ladder)."""
    if isinstance(e, ServerError):
        return SERVER
    if isinstance(e, NetworkError):
        return NETWORK
    if isinstance(e, ATTimeout):
        return MODULE
    return None


async def recover(m, cause=None):
    """After a failure of class `cause`: back off, then act as the class says (see the module doc)."""
    m._stats["recoveries"] += 1
    if cause == SERVER:
        return await _server_backoff(m)
    m._attempts += 1
    rung = min(m._rung + 1, 5)
    if rung < 2 and (cause == NETWORK or (not m._pdp and m._up and not m._need_reinit)):
        rung = 2  # the context is known to be gone: reactivating it is the first useful step
    if cause == NETWORK:
        rung = min(rung, _NETWORK_TOP)
    await _sleep_ms(m.backoff_ms(m._attempts))
    if rung < 4 and (cause == MODULE or m.at.unanswered >= _UNANSWERED_DEAD) and not await m._probe():
        # commands go unanswered and so does a bare AT: the lower rungs would only wait out their timeouts
        # (QIDEACT's is 40 s); only a power cycle helps (vendor policy)
        m._warn("module answers nothing, not even AT: power cycle")
        rung = 4
    m._rung = rung
    name = RUNGS[rung - 1]
    m.ladder[name] += 1
    m._info("recovery attempt %d (%s): rung %s", m._attempts, cause or "unclassified", name)
    try:
        await m._ensure()  # a restart seen meanwhile: re-initialise first (one owner, under the lock)
        if rung == 2:
            await m._exclusive(_reactivate_pdp, m)
        elif rung == 3:
            await m._exclusive(_cfun_cycle, m)
        elif rung == 4:
            await power_cycle(m)
        elif rung == 5 and m.on_mcu_reset is not None:
            m.on_mcu_reset()
    except ATTimeout as e:
        if rung in (2, 3):
            # The module does not answer at all: only a power cycle helps (vendor policy).
            m._warn("rung %s got no answer (%s): power cycle", name, e)
            m._rung = 4
            m.ladder["power"] += 1
            name = "power"
            try:
                await power_cycle(m)
            except (ModemError, ATEngineError, OSError) as e2:
                m._warn("power cycle failed: %s", e2)
        else:
            m._warn("rung %s failed: %s", name, e)
    except (ModemError, ATEngineError, OSError) as e:
        m._warn("rung %s failed: %s", name, e)
    return name


async def _server_backoff(m):
    # The network and the module are fine: only the server's side failed. Wait and let the caller reopen.
    m._server_attempts += 1
    m._stats["server_fail"] += 1
    m.ladder["socket"] += 1
    wait = m.backoff_ms(m._server_attempts, m.server_backoff_max_ms)
    m._info("server unreachable (attempt %d), network and module healthy: no module action, retry in %d.%d s",
            m._server_attempts, wait // 1000, wait % 1000 // 100)
    await _sleep_ms(wait)
    return "socket"


def recovered(m):
    """A success after failures: remember the rung that fixed it and reset the ladder and the backoffs."""
    if m._attempts or m._server_attempts:
        m.ladder["fixed_by"] = RUNGS[m._rung - 1] if m._rung else "socket"
        m._info("link recovered at rung %s after %d attempt(s)", m.ladder["fixed_by"],
                m._attempts + m._server_attempts)
    m._attempts = 0
    m._server_attempts = 0
    m._rung = 0


async def _reactivate_pdp(m):
    gen = m._gen
    m._lose_sockets()
    m._pdp = False
    try:
        await m.at.cmd("AT+QIDEACT=%d" % m.ctx, m.timeouts["qideact"])
    except ATError:
        pass  # not active is fine
    await m._attach(gen)  # registration, context settings, then activation (aborted by a restart meanwhile)


async def _cfun_cycle(m):
    t = m.timeouts
    gen = m._gen
    m._lose_sockets()
    m._pdp = False
    await m.at.cmd("AT+CFUN=0", t["cfun"])
    await m.at.cmd("AT+CFUN=1", t["cfun"])
    await m._wait_sim()
    await m._attach(gen)


async def power_cycle(m):
    """RESET pulse, or PWRKEY off/on, or AT+CFUN=1,1; then a full start (under the bring-up lock)."""
    t = m.timeouts
    m._lose_sockets()
    m._pdp = False
    m._up = False
    m._stats["power_cycles"] += 1

    async def cycle():
        since = m.at.stats["rdy"]
        m._booting = True  # the RDY that follows is ours
        try:
            if m.reset:
                await m._pulse(m.reset, t["reset_pulse"])
            elif m.pwrkey:
                await m._pulse(m.pwrkey, t["pulse"])  # a pulse while on powers the module down
                try:
                    await m.at.wait_urc("POWERED DOWN", t["power_off"])
                except ATTimeout:
                    pass
                since = m.at.stats["rdy"]
                await m._pulse(m.pwrkey, t["pulse"])
            else:
                try:
                    await m.at.cmd("AT+CFUN=1,1", t["cfun"])
                except ATEngineError:
                    pass
        except BaseException:
            m._booting = False
            raise
        await m._start(since)

    await m._exclusive(cycle)
