"""Drives lib/quectel against tools/sim/modem under the unix port; prints JSON lines for tests/port/test_quectel.py.

    micropython modem_check.py <sim_port> <control_port> <echo_port> <scenario> [reset|pwrkey [apn [port]]]

scenario: 'bringup', 'gnss' or the name of a simulator fault; the last argument
names the module input wired for power cycles (default reset). Every line
printed is a JSON object with an "ev" key; the last one is {"ev": "done", ...}.
"""

import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib"]

import asyncio  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

import quectel  # noqa: E402
from atengine import ATEngineError  # noqa: E402
from tcpuart import TcpUart  # noqa: E402

TIMEOUTS = {"cmd": 1000, "probe": 300, "boot": 3000, "sim": 3000, "reg": 3000, "qiact": 2000, "qideact": 1000,
            "qiclose": 1000, "qiopen": 2000, "cfun": 1000, "read": 2000, "poll": 50, "pulse": 50,
            "reset_pulse": 50, "power_off": 300}
ERRORS = (quectel.ModemError, ATEngineError, OSError)


def emit(ev, **kw):
    kw["ev"] = ev
    print(json.dumps(kw))


class Control:
    """Blocking JSON-lines client of the simulator's control port (quick: loopback)."""

    def __init__(self, port):
        self.s = socket.socket()
        self.s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])

    def ask(self, req):
        self.s.write(json.dumps(req).encode() + b"\n")
        return json.loads(self.s.readline())


class SimPin:
    """The module's RESET input, driven through the simulator's control port."""

    def __init__(self, ctl, name):
        self.ctl, self.name = ctl, name

    def on(self):
        self.ctl.ask({"pin": self.name, "on": True})

    def off(self):
        self.ctl.ask({"pin": self.name, "on": False})


async def echo(sock, payload, timeout_ms=3000):
    """Write payload through the socket to the echo server and read it back; ModemError if it does not return."""
    await sock.write(payload)
    got = b""
    t0 = time.ticks_ms()
    while len(got) < len(payload):
        left = timeout_ms - time.ticks_diff(time.ticks_ms(), t0)
        if left <= 0:
            raise quectel.ModemError("echo: %d of %d bytes back" % (len(got), len(payload)))
        d = await sock.read(1460, left)
        if d is None:
            continue
        if d == b"":
            raise quectel.ModemError("echo: socket closed")
        got += d
    if got != payload:
        raise quectel.ModemError("echo: bytes differ")


async def until_usable(m, echo_port, attempts=8):
    """Reopen and echo, climbing the recovery ladder after each failure, as the uplink does."""
    for i in range(attempts):
        sock = None
        try:
            sock = await m.open_socket("127.0.0.1", echo_port, TIMEOUTS["qiopen"])
            await echo(sock, b"after-recovery-%d" % i)
            m.recovered()
            return sock
        except ERRORS as e:
            emit("attempt_failed", n=i, error=str(e))
            if sock is not None:
                sock.close()
            emit("rung", name=await m.recover())
    raise quectel.ModemError("not usable after %d attempts" % attempts)


def binary_payload(n):
    # Bytes that look like AT traffic inside the payload: the engine must read them as data.
    chunk = b'\r\nOK\r\n+QIURC: "recv",0\r\n> SEND OK\r\nRDY\r\n\x00\xff'
    out = bytearray()
    i = 0
    while len(out) < n:
        out += chunk
        out.append(i & 0xFF)
        i += 1
    return bytes(out[:n])


async def gnss_until_fix(m, timeout_ms=6000):
    await m.gnss_start()
    seen = []
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < timeout_ms:
        lines = await m.gnss_nmea()
        seen.extend(lines)
        for s in lines:
            f = s.split(",")
            if s[3:6] == "GGA" and len(f) > 7 and f[6] not in ("", "0") and f[7] not in ("", "00"):
                return seen, True
        await asyncio.sleep_ms(100)
    return seen, False


async def bringup(m, ctl, echo_port):
    emit("info", imei=m.imei, iccid=m.iccid, signal=await m.signal(), time=await m.network_time(),
         ready=m.ready)
    sock = await m.open_socket("127.0.0.1", echo_port, TIMEOUTS["qiopen"])
    emit("open", id=sock.id)
    sizes = []
    for payload in (b"hello", binary_payload(3000), binary_payload(1460), binary_payload(1)):
        await echo(sock, payload)
        sizes.append(len(payload))
    emit("echoed", sizes=sizes)
    seen, fixed = await gnss_until_fix(m)
    emit("gnss", sentences=seen, fixed=fixed, loc=await m.gnss_loc(), more=await m.gnss_nmea(("GSA", "GSV")))
    await sock.aclose()
    emit("closed", closed=sock.closed, stale=len(m._stale))


async def fault(m, ctl, echo_port, name):
    sock = await m.open_socket("127.0.0.1", echo_port, TIMEOUTS["qiopen"])
    await echo(sock, b"before")
    req = {"fault": name, "on": True}
    if name == "send_fail":
        req["n"] = m.send_retries + 2  # more than one write absorbs: the ladder has to act
    elif name == "garbage":
        req["n"] = 200
    elif name == "urc_mid_response":
        req["n"] = 3
    ctl.ask(req)
    await asyncio.sleep_ms(300)  # let URCs (closed, pdpdeact, RDY) arrive as they would in service
    extra = {}
    if name == "urc_mid_response":
        extra["signal"] = await m.signal()
    if name == "antenna":
        await m.gnss_start()
        extra["nmea"] = await m.gnss_nmea()
        extra["loc"] = await m.gnss_loc()
    try:
        await echo(sock, b"during-" + name.encode())
        emit("survived")
    except ERRORS as e:
        emit("broken", error=str(e))
        sock.close()  # as the uplink does with a dead session
        emit("rung", name=await m.recover())
        sock = await until_usable(m, echo_port)
    await echo(sock, b"usable-again")
    emit("usable", **extra)


async def server_down(m, ctl, echo_port, dead_port):
    """The server refuses while the network is healthy: every failure is 'server', nothing is done to the module."""
    for i in range(4):
        try:
            await m.open_socket("127.0.0.1", dead_port, TIMEOUTS["qiopen"], label="broker")
            emit("opened_dead")
        except ERRORS as e:
            cls = m.failure_class(e)
            emit("failed", n=i, cls=cls, error=str(e))
            emit("rung", name=await m.recover(cls))
    sock = await m.open_socket("127.0.0.1", echo_port, TIMEOUTS["qiopen"], label="broker")
    await echo(sock, b"server-back")
    m.recovered()
    emit("usable")


async def gnss_poller(m, stop, counts):
    # another task using the module meanwhile, as the position task does
    while not stop:
        try:
            await m.gnss_nmea()
            counts[0] += 1
        except ERRORS:
            counts[1] += 1
        await asyncio.sleep_ms(30)


async def rdy_race(m, ctl, echo_port):
    """The module restarts by itself while another task uses it: one owner re-initialises it in order."""
    await m.gnss_start()
    await m.gnss_nmea()  # the EC2x-like simulator wants nmeasrc: the driver learns it
    sock = await m.open_socket("127.0.0.1", echo_port, TIMEOUTS["qiopen"])
    await echo(sock, b"before")
    stop, counts = [], [0, 0]
    poller = asyncio.create_task(gnss_poller(m, stop, counts))
    ctl.ask({"fault": "reboot", "on": True})
    t0 = time.ticks_ms()
    await asyncio.sleep_ms(100)
    try:
        await echo(sock, b"during")
        emit("survived")
    except ERRORS as e:
        emit("broken", error=str(e))
        sock.close()
        emit("rung", name=await m.recover(m.failure_class(e)))
        sock = await until_usable(m, echo_port)
    await echo(sock, b"usable-again")
    emit("usable", ms=time.ticks_diff(time.ticks_ms(), t0))
    stop.append(1)
    await poller
    emit("poller", ok=counts[0], failed=counts[1])


async def open_lost(m, ctl, dead_port):
    """The context goes away while a socket is opening and the module says nothing more about it."""
    t0 = time.ticks_ms()
    task = asyncio.create_task(m.open_socket("127.0.0.1", dead_port, 10000, label="broker"))
    await asyncio.sleep_ms(50)
    ctl.ask({"fault": "pdpdeact", "on": True})
    try:
        await task
        emit("opened")
    except ERRORS as e:
        emit("open_failed", ms=time.ticks_diff(time.ticks_ms(), t0), cls=m.failure_class(e), error=str(e))


async def main(sim_port, ctl_port, echo_port, scenario, pin, apn="cmnet", extra=0):
    ctl = Control(ctl_port)
    pins = {pin: SimPin(ctl, pin)}
    m = quectel.Quectel(TcpUart("127.0.0.1:%d" % sim_port), apn=apn, apn_pass="s3cret-apn-pw", gnssconfig=1,
                        timeouts=TIMEOUTS, backoff_base_ms=20, backoff_max_ms=200, server_backoff_max_ms=100,
                        send_backoff_ms=20, **pins)
    t0 = time.ticks_ms()
    await m.start()
    emit("up", ms=time.ticks_diff(time.ticks_ms(), t0), ready=m.ready, powered=ctl.ask({"get": "state"}))
    if scenario == "bringup":
        await bringup(m, ctl, echo_port)
    elif scenario == "gnss":
        seen, fixed = await gnss_until_fix(m)
        emit("gnss", sentences=seen, fixed=fixed)
    elif scenario == "server_down":
        await server_down(m, ctl, echo_port, extra)
    elif scenario == "rdy_race":
        await rdy_race(m, ctl, echo_port)
    elif scenario == "open_lost":
        await open_lost(m, ctl, extra)
    else:
        await fault(m, ctl, echo_port, scenario)
    emit("done", ladder=m.ladder, stats=m.stats, ready=m.ready)


try:
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                     sys.argv[5] if len(sys.argv) > 5 else "reset", sys.argv[6] if len(sys.argv) > 6 else "cmnet",
                     int(sys.argv[7]) if len(sys.argv) > 7 else 0))
except Exception as e:
    sys.print_exception(e)
    emit("error", error=repr(e))
    sys.exit(1)
