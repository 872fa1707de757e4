"""firmware/frozen, meter_events, meter_clock and metering's plausibility under the unix port against the meter
simulator; a JSON line a step.

    micropython meter_records.py <bus port> <control port> <plan.json>

plan: {"state_dir": path, "records": path (JSON lines appended: {"kind": k, "body": ...}), "meter": address,
"meters": [address, ...] (optional: several on the bus; events and frozen go to each),
"master": {Master options}, "clock_offset_s": trusted UTC minus this process's time.time(), "tsrc": "gnss",
"cfg": {overrides}, "steps": [...]}; a step is ["frozen"], ["settle"], ["events"], ["clock"], ["poll"],
["control", {request}], ["restart"] (new modules on the same state_dir, as after a reset),
["cut_at", k] (the k-th record stored from now on reaches flash, then the power fails: the step ends),
["refuse_at", k] (the outbox fails to write the k-th record from now on: store returns None).
"""

import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib", _root]

import asyncio  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

from dlt645_master import Master  # noqa: E402
from tcpuart import TcpUart  # noqa: E402

from firmware import config, payloads  # noqa: E402
from firmware.frozen import FrozenDays  # noqa: E402
from firmware.meter_clock import MeterClock  # noqa: E402
from firmware.meter_events import MeterEvents  # noqa: E402
from firmware.metering import Metering  # noqa: E402
from firmware.settlement import Settlements  # noqa: E402


class PowerCut(Exception):
    pass


def control(port, req):
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
    def __init__(self, offset, source):
        self.offset = offset
        self.source = source

    def now(self):
        return int(time.time() + self.offset)

    def stamp(self):
        return self.now(), self.source

    def uptime_s(self):
        return int(time.time())


class Log:
    def _p(self, level, msg, args):
        sys.stderr.write("%s %s\n" % (level, msg % args if args else msg))

    def debug(self, msg, *args):
        self._p("DEBUG", msg, args)

    def info(self, msg, *args):
        self._p("INFO", msg, args)

    def warning(self, msg, *args):
        self._p("WARNING", msg, args)

    def error(self, msg, *args):
        self._p("ERROR", msg, args)


class Terminal:
    """What the modules use of the terminal: cfg, master, clock, log, store and events."""

    def __init__(self, port, plan, clock):
        cfg = config.defaults()
        meters = plan.get("meters") or [plan["meter"]]
        cfg.update({"state_dir": plan["state_dir"], "meters": meters})
        cfg.update(plan.get("cfg", {}))
        self.cfg = cfg
        self.uart = TcpUart("127.0.0.1:%d" % port)
        self.master = Master(self.uart, **plan.get("master", {}))
        self.clock = clock
        self.log = Log()
        self.records_path = plan["records"]
        self.cut_at = None
        self.refuse_at = None
        self.events = []
        self.meters = meters
        self.metering = Metering(self)
        self.frozen = FrozenDays(self.master, cfg, clock, self.store, self.log, self._pause)
        self.settle = Settlements(self.master, cfg, clock, self.store, self.log, self.metering.caps, self._pause)
        self.mevents = MeterEvents(self.master, clock, self.store, self.log, cfg["state_dir"], pause_ms=0,
                                   on_clear=self.metering.plausibility.forget)
        self.mclock = MeterClock(self.master, cfg, clock, self.emit_event, self.log)

    async def _pause(self):
        await asyncio.sleep_ms(0)

    def emit_event(self, kind, data=None):
        self.events.append(kind)
        self.store("event", payloads.event(self.clock.now(), self.clock.source, kind, data))

    def store(self, kind, body):
        if self.refuse_at is not None:
            self.refuse_at -= 1
            if self.refuse_at <= 0:
                self.refuse_at = None
                return None
        with open(self.records_path, "a") as f:
            f.write(payloads.dumps({"kind": kind, "body": body}) + "\n")
        if self.cut_at is not None:
            self.cut_at -= 1
            if self.cut_at <= 0:
                raise PowerCut()
        return 1


async def main(port, cport, plan):
    clock = Clock(plan.get("clock_offset_s", 0), plan.get("tsrc", "gnss"))
    t = Terminal(port, plan, clock)
    for k, step in enumerate(plan["steps"]):
        t.events = []
        out = {"step": k, "op": step[0]}
        t0 = time.ticks_ms()
        try:
            if step[0] == "restart":
                t.uart.close()
                t = Terminal(port, plan, clock)
            elif step[0] == "control":
                out["ok"] = control(cport, step[1])
            elif step[0] == "cut_at":
                t.cut_at = step[1]
            elif step[0] == "refuse_at":
                t.refuse_at = step[1]
            elif step[0] == "frozen":
                out["ok"] = await t.frozen.round(t.meters)
                out["stored"] = t.frozen.stored
                out["bus_ms"] = t.frozen.bus_ms
                out["rewalks"] = t.frozen.rewalks
            elif step[0] == "settle":
                out["ok"] = await t.settle.round(t.meters)
                out["stored"] = t.settle.stored
                out["bus_ms"] = t.settle.bus_ms
                out["rewalks"] = t.settle.rewalks
                out["behind"] = t.settle.behind
            elif step[0] == "events":
                out["sent"] = 0
                for addr in t.meters:
                    out["sent"] += await t.mevents.check(addr)
                out["bus_ms"] = t.mevents.bus_ms
            elif step[0] == "clock":
                out["result"] = await t.mclock.check(t.meters)
                out["syncs"] = t.mclock.syncs
                out["bus_ms"] = t.mclock.bus_ms
            elif step[0] == "poll":
                r = await t.metering.poll_and_store(plan["meter"])
                out["ok"] = r is not None
            else:
                raise ValueError("unknown step %r" % (step,))
        except PowerCut:
            out["cut"] = True
            t.cut_at = None
        out["ms"] = time.ticks_diff(time.ticks_ms(), t0)
        out["events"] = t.events
        out["stats"] = t.master.stats
        print(json.dumps(out))
    print(json.dumps({"done": len(plan["steps"])}))


with open(sys.argv[3]) as _f:
    _plan = json.load(_f)
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), _plan))
