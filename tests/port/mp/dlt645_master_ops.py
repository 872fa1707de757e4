"""Runs lib/dlt645_master under the unix port against a meter bus simulator; prints one JSON line per operation.

    micropython dlt645_master_ops.py <bus port> <plan.json>

plan: {"master": {Master keyword options}, "de": bool, "ops": [[name, args...], ...]} where a name is one of
read, read_raw, read_1997, read_address, discover, broadcast_time, write, quiet, probe_baud. Each op prints
{"op": name, "ok": result} or {"op": name, "error": class name, "reasons": [...]}; the last line is
{"stats": Master.stats, "de": [[on_ms, off_ms], ...], "uart": {"connects": n, "drops": n}}.
"""

import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib"]

import asyncio  # noqa: E402
import binascii  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

import dlt645  # noqa: E402
from dlt645_master import Master  # noqa: E402
from tcpuart import TcpUart  # noqa: E402


class RecordingPin:
    """Stands in for the RS-485 driver-enable pin: records when it was driven."""

    def __init__(self):
        self.spans = []
        self._on = None

    def on(self):
        self._on = time.ticks_ms()

    def off(self):
        self.spans.append([self._on, time.ticks_ms()])


def control(port, req):
    # One JSON request to the simulator's control port; blocking, bounded by the socket timeout.
    s = socket.socket()
    s.settimeout(5)
    s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    s.write(json.dumps(req).encode() + b"\n")
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(256)
        if not chunk:
            break
        line += chunk
    s.close()
    return json.loads(line)


async def run_op(m, uart, op):
    name, args = op[0], op[1:]
    if name == "read":
        return await m.read(args[0], int(args[1], 16))
    if name == "read_raw":
        return binascii.hexlify(await m.read_raw(args[0], int(args[1], 16))).decode()
    if name == "read_1997":
        return await m.read_1997(args[0], int(args[1], 16))
    if name == "read_address":
        return await m.read_address()
    if name == "discover":
        return await m.discover(args[0] if args else ())
    if name == "broadcast_time":
        await m.broadcast_time(args[0])
        return True
    if name == "write":
        await m.write(args[0], int(args[1], 16), dlt645.encode_value(int(args[1], 16), args[2]), args[3])
        return True
    if name == "quiet":
        # Listen for `ms` without sending: count what arrives (a broadcast must get no answer).
        await asyncio.sleep_ms(args[0])
        n = 0
        for _ in range(16):
            got = uart.read(256)
            if not got:
                break
            n += len(got)
        return n
    if name == "probe_baud":
        ctl, sim_baud = args[0], args[1]
        tried = []

        def set_baud(b):
            tried.append(b)
            # A meter at another baud hears only garbage: the simulator keeps silent then.
            control(ctl, {"fault": "silence", "on": b != sim_baud, "address": None})

        b = await m.probe_baud(set_baud)
        control(ctl, {"fault": "silence", "on": False, "address": None})
        return [b, tried]
    raise ValueError("unknown op " + name)


async def main(port, plan):
    uart = TcpUart("127.0.0.1:%d" % port)
    de = RecordingPin() if plan.get("de") else None
    m = Master(uart, de=de, **plan.get("master", {}))
    for op in plan["ops"]:
        t0 = time.ticks_ms()
        try:
            out = {"op": op[0], "ok": await run_op(m, uart, op)}
        except dlt645.DLT645Error as e:
            out = {"op": op[0], "error": type(e).__name__, "reasons": getattr(e, "reasons", [])}
        out["ms"] = time.ticks_diff(time.ticks_ms(), t0)
        print(json.dumps(out))
    print(json.dumps({"stats": m.stats, "de": de.spans if de else [],
                      "uart": {"connects": uart.connects, "drops": uart.drops},
                      "wire_ms_per_byte": m.wire_ms(100) / 100}))


with open(sys.argv[2]) as _f:
    _plan = json.load(_f)
asyncio.run(main(int(sys.argv[1]), _plan))
