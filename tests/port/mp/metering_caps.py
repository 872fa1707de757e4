"""firmware/metering with lib/dlt645_master under the unix port against the meter simulator; a JSON line a poll.

    micropython metering_caps.py <bus port> <control port> <plan.json>

plan: {"state_dir": path, "master": {Master options}, "inst": [...], "steps": [step, ...]} where a step is
["poll", n, step_s] (n polls of the one meter, the clock moved step_s after each: no waiting),
["restart"] (a new master and Metering on the same state_dir, as after a reset),
["fault", {control request}] (sent to the simulator's control port).
Each poll prints {"poll": k, "ok": bool, "stats": Master.stats, "failed": n, "events": [...], "phases": n,
"asked": [DI, ...] (hex, refused ones included), "inst": JSON text of the reading's inst}.
"""

import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib", _root]

import asyncio  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402

from dlt645_master import Master  # noqa: E402
from tcpuart import TcpUart  # noqa: E402

from firmware import payloads  # noqa: E402
from firmware.metering import Metering  # noqa: E402


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


class Clock:
    def __init__(self):
        self.t = 1795430400

    def now(self):
        return self.t

    def stamp(self):
        return self.t, "gnss"


class Log:
    def _p(self, level, msg, args):
        sys.stderr.write("%s %s\n" % (level, msg % args if args else msg))

    def debug(self, msg, *args):
        self._p("DEBUG", msg, args)

    def info(self, msg, *args):
        self._p("INFO", msg, args)

    def warning(self, msg, *args):
        self._p("WARNING", msg, args)


class Terminal:
    """What Metering uses of the terminal: cfg, master, clock, log, store and events."""

    def __init__(self, port, plan, clock):
        self.cfg = {"state_dir": plan["state_dir"], "inst": plan["inst"], "meters": [plan["meter"]],
                    "log_level": "info", "time_sync_meters": False}
        self.uart = TcpUart("127.0.0.1:%d" % port)
        self.master = Master(self.uart, **plan.get("master", {}))
        self.clock = clock
        self.log = Log()
        self.events = []
        self.records = []
        self.asked = []
        read_raw = self.master.read_raw

        async def recording(address, di, expect_refusal=False):
            self.asked.append("%08X" % di)
            return await read_raw(address, di, expect_refusal)

        self.master.read_raw = recording

    def emit_event(self, kind, data=None):
        self.events.append(kind)

    def store(self, kind, body):
        self.records.append(body)


async def main(port, cport, plan):
    clock = Clock()
    t = Terminal(port, plan, clock)
    m = Metering(t)
    k = 0
    for step in plan["steps"]:
        if step[0] == "restart":
            t.uart.close()
            t = Terminal(port, plan, clock)
            m = Metering(t)
        elif step[0] == "fault":
            control(cport, step[1])
        elif step[0] == "poll":
            for _ in range(step[1]):
                k += 1
                t.asked = []
                t.events = []
                r = await m.poll_and_store(plan["meter"])
                print(json.dumps({"poll": k, "ok": r is not None, "stats": t.master.stats, "failed": m.failed_reads,
                                  "events": t.events, "phases": m.caps.phases(plan["meter"]), "asked": t.asked,
                                  "inst": payloads.dumps(r.get("inst", {})) if r else None}))
                clock.t += step[2]
        else:
            raise ValueError("unknown step %r" % (step,))
    print(json.dumps({"done": k}))


with open(sys.argv[3]) as _f:
    _plan = json.load(_f)
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), _plan))
