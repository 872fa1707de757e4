"""Drives lib/quectel against tools/sim/modem under the unix port; prints JSON lines for tests/port/test_quectel.py.

    micropython modem_check.py <sim_port> <control_port> <echo_port> <scenario> [reset|pwrkey]

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


async def main(sim_port, ctl_port, echo_port, scenario, pin):
    ctl = Control(ctl_port)
    pins = {pin: SimPin(ctl, pin)}
    m = quectel.Quectel(TcpUart("127.0.0.1:%d" % sim_port), apn="cmnet", gnssconfig=1, timeouts=TIMEOUTS,
                        backoff_base_ms=20, backoff_max_ms=200, send_backoff_ms=20, **pins)
    t0 = time.ticks_ms()
    await m.start()
    emit("up", ms=time.ticks_diff(time.ticks_ms(), t0), ready=m.ready, powered=ctl.ask({"get": "state"}))
    if scenario == "bringup":
        await bringup(m, ctl, echo_port)
    elif scenario == "gnss":
        seen, fixed = await gnss_until_fix(m)
        emit("gnss", sentences=seen, fixed=fixed)
    else:
        await fault(m, ctl, echo_port, scenario)
    emit("done", ladder=m.ladder, stats=m.stats, ready=m.ready)


try:
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                     sys.argv[5] if len(sys.argv) > 5 else "reset"))
except Exception as e:
    sys.print_exception(e)
    emit("error", error=repr(e))
    sys.exit(1)
