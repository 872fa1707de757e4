"""Bring-up of a Quectel module, in order: power-on, every volatile setting, SIM, registration, APN, PDP.

The driver (lib/quectel.py) runs these under its bring-up lock: one owner at a
time. Each step checks that the module did not restart meanwhile (`gen`, the
count of RDYs the driver has seen): a module that restarted forgot its settings.
"""

import asyncio

import quectel_gnss
from atengine import ATError
from mpcompat import ticks_diff, ticks_ms
from quectel_parse import parse_cereg, parse_iccid, parse_imei
from quectel_socket import ModemError, NetworkError

_SIM_BUSY = (10, 13, 14)  # not inserted yet / failure / busy: all seen for a while after boot

try:
    _sleep_ms = asyncio.sleep_ms
except AttributeError:  # CPython

    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


async def power_on(m, since_rdy):
    """Return once the module answers AT. since_rdy: RDY count before a reset we caused (None: none)."""
    t = m.timeouts
    if since_rdy is None:
        since_rdy = m.at.stats["rdy"]  # before the probe: a RDY may interrupt it
        if await m._probe():
            return
        if m.pwrkey and m.at.stats["rdy"] == since_rdy:
            m._info("modem silent: PWRKEY pulse")
            await m._pulse(m.pwrkey, t["pulse"])
    t0 = ticks_ms()
    while True:
        left = t["boot"] - ticks_diff(ticks_ms(), t0)
        if left <= 0:
            raise ModemError("no answer from the module within %d ms" % t["boot"])
        await m.at.wait_rdy(since_rdy, min(left, 1000))
        if await m._probe():
            return


def check(m, gen):
    if m._gen != gen:
        raise ModemError("module restarted during bring-up")


async def setup(m):
    """Every volatile setting, in order: echo, CMEE, SSL context, SIM, ids, GNSS config; then registration, APN,
    PDP."""
    t = m.timeouts
    gen = m._gen
    await m.at.cmd("ATE0", t["cmd"])
    await m.at.cmd("AT+CMEE=1", t["cmd"])
    if m.tls is not None:  # the SSL context is volatile too
        import quectel_ssl

        await quectel_ssl.configure(m)
    await wait_sim(m)
    m.imei = parse_imei(await m.at.cmd("AT+CGSN", t["cmd"])) or m.imei
    m.iccid = parse_iccid(await m.at.cmd("AT+QCCID", t["cmd"])) or m.iccid
    if m._gnss_wanted:
        try:
            await quectel_gnss.start(m)
        except ATError as e:
            m._warn("GNSS restart refused: %s", e)
    check(m, gen)
    await attach(m, gen)
    check(m, gen)
    m._need_reinit = False
    m._up = True


async def wait_sim(m):
    t = m.timeouts
    t0 = ticks_ms()
    while True:
        try:
            for line in await m.at.cmd("AT+CPIN?", t["cmd"]):
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


async def attach(m, gen):
    """Registration (CEREG stat 1 or 5), then the context's APN (QICSGP), then PDP activation."""
    t = m.timeouts
    t0 = ticks_ms()
    while True:
        check(m, gen)
        stat = parse_cereg(await m.at.cmd("AT+CEREG?", t["cmd"]))
        if stat in (1, 5):
            break
        if ticks_diff(ticks_ms(), t0) >= t["reg"]:
            raise NetworkError("not registered within %d ms (stat %s)" % (t["reg"], stat))
        await _sleep_ms(t["poll"])
    auth = 1 if m.apn_user else 0
    await m.at.cmd('AT+QICSGP=%d,1,"%s","%s","%s",%d' % (m.ctx, m.apn, m.apn_user, m.apn_pass,
                                                           auth), t["cmd"])
    check(m, gen)
    await activate_pdp(m, gen)


async def activate_pdp(m, gen):
    t = m.timeouts
    err = None
    for _ in range(3):
        others = []
        for line in await m.at.cmd("AT+QIACT?", t["cmd"]):
            if line.startswith("+QIACT:"):
                f = line[7:].split(",")
                if f[0].strip() == str(m.ctx) and f[1:2] == ["1"]:
                    m._pdp = True
                    return
                others.append(f[0].strip())
        check(m, gen)
        try:
            await m.at.cmd("AT+QIACT=%d" % m.ctx, t["qiact"])
            m._pdp = True
            return
        except ATError as e:
            # e.g. 572 (another context active): deactivate and try again
            err = e
            m._stats["pdp_errors"] += 1
            m._lose_sockets()
            for c in others + [str(m.ctx)]:
                try:
                    await m.at.cmd("AT+QIDEACT=%s" % c, t["qideact"])
                except ATError:
                    pass
    raise NetworkError("PDP activation on APN \"%s\" refused: %s" % (m.apn, err))


async def network_ok(m):
    """Registered and the context active (two short queries): then a failed open is the server's side."""
    t = m.timeouts
    if parse_cereg(await m.at.cmd("AT+CEREG?", t["cmd"])) not in (1, 5):
        return False
    for line in await m.at.cmd("AT+QIACT?", t["cmd"]):
        if line.startswith("+QIACT:"):
            f = line[7:].split(",")
            if f[0].strip() == str(m.ctx) and f[1:2] == ["1"]:
                return True
    return False
