"""Meter capabilities: refusals learned on first contact, kept on flash, skipped after, re-probed daily and on return.

The meters here answer in-process (no bus, no wall-clock waits): a poll is a call, the clock a number.
"""

import asyncio
import json

import dlt645
from dlt645_values import encode_value
from portable import FixedClock, scratch

from firmware import payloads
from firmware.meter_caps import MeterCaps
from firmware.metering import Metering

A = "000072007201"
POLL_S = 900
BLOCK = 0x0001FF00
V_B, V_C, I_B, I_C = 0x02010200, 0x02010300, 0x02020200, 0x02020300
VALUES = {
    0x00010000: 1234.56, 0x00010100: 100.0, 0x00010200: 300.0, 0x00010300: 500.0, 0x00010400: 334.56,
    0x00020000: 1.5, 0x00000000: 1233.06, BLOCK: [1234.56, 100.0, 300.0, 500.0, 334.56],
    0x02010100: 229.8, V_B: 230.1, V_C: 230.4, 0x02020100: 1.234, I_B: 0.5, I_C: 0.0,
    0x02030000: 0.8957, 0x02060000: 0.98, 0x02800002: 50.01,
}


class FakeMeter:
    """A meter behind a master: answers from VALUES, refuses what it lacks with ERR "no such data".

    Counts like lib/dlt645_master.Master: an expected refusal in stats["refused"], any other in "abnormal".
    """

    def __init__(self, phases=3, block=True):
        self.lacks = set()
        if phases == 1:
            self.lacks.update((V_B, V_C, I_B, I_C))
        if not block:
            self.lacks.add(BLOCK)
        self.silent = False
        self.asked = []
        self.stats = {"abnormal": 0, "refused": 0}

    async def read_raw(self, address, di, expect_refusal=False):
        self.asked.append(di)
        if self.silent:
            raise dlt645.NoReply("meter %s: no reply" % address)
        if di in self.lacks:
            self.stats["refused" if expect_refusal else "abnormal"] += 1
            raise dlt645.MeterError(dlt645.ERR_NO_DATA, address)
        return encode_value(di, VALUES[di])

    async def read(self, address, di, expect_refusal=False):
        return dlt645.value(di, await self.read_raw(address, di, expect_refusal))


class FakeLog:
    def __init__(self):
        self.lines = []

    def _add(self, level, msg, *args):
        self.lines.append((level, msg % args if args else msg))

    def debug(self, msg, *args):
        self._add("debug", msg, *args)

    def info(self, msg, *args):
        self._add("info", msg, *args)

    def warning(self, msg, *args):
        self._add("warning", msg, *args)


class FakeTerminal:
    """What Metering uses of the terminal."""

    def __init__(self, state_dir, master, log_level="info", inst=("v", "i", "p", "pf", "f")):
        self.cfg = {"state_dir": state_dir, "inst": list(inst), "meters": [A], "log_level": log_level,
                    "time_sync_meters": False}
        self.master = master
        self.clock = FixedClock(1795430400)
        self.log = FakeLog()
        self.events = []
        self.records = []

    def emit_event(self, kind, data=None):
        self.events.append(kind)

    def store(self, kind, body):
        self.records.append(body)


def poll(m, times=1, step=POLL_S):
    """`times` polls of A, `step` seconds of clock apart (no waiting); the readings."""
    out = []
    for _ in range(times):
        out.append(asyncio.run(m.poll_and_store(A)))
        m.t.clock.t += step
    return out


def test_single_phase_meter_polled_for_an_hour_keeps_meter_abnormal_flat():
    # regression: phases B and C were asked (and refused) every poll, so meter_abnormal grew every
    # poll and every heartbeat went out in the full form
    meter = FakeMeter(phases=1)
    m = Metering(FakeTerminal(scratch("caps-1ph"), meter))
    poll(m)
    after_first = meter.stats["abnormal"]
    assert after_first == 2  # first contact: B voltage and B current, once each
    asked = len(meter.asked)
    readings = poll(m, 4)  # an hour at the default 900 s
    assert meter.stats["abnormal"] == after_first and meter.stats["refused"] == 0
    later = meter.asked[asked:]
    for di in (V_B, V_C, I_B, I_C):
        assert di not in later, "%08X asked again" % di
    assert m.caps.phases(A) == 1 and m.failed_reads == 0
    r = readings[-1]
    assert r["inst"]["v"] == [payloads.Fixed(2298, 1)] and r["inst"]["i"] == [payloads.Fixed(1234, 3)]
    assert r["kwh"]["fwd"] == payloads.Centi(123456)


def test_three_phase_meter_reports_three_phases():
    meter = FakeMeter(phases=3)
    m = Metering(FakeTerminal(scratch("caps-3ph"), meter))
    r = poll(m)[0]
    assert len(r["inst"]["v"]) == 3 and len(r["inst"]["i"]) == 3
    assert m.caps.phases(A) == 3 and meter.stats["abnormal"] == 0


def test_block_refused_once_then_registers_one_by_one():
    # regression: a meter that refuses the block DI had the block asked (and refused) every poll
    meter = FakeMeter(block=False)
    m = Metering(FakeTerminal(scratch("caps-noblock"), meter, inst=()))
    poll(m)
    assert meter.stats["abnormal"] == 1 and meter.asked.count(BLOCK) == 1
    readings = poll(m, 4)
    assert meter.asked.count(BLOCK) == 1 and meter.stats["abnormal"] == 1
    assert readings[-1]["kwh"]["t4"] == payloads.Centi(33456)


def test_capabilities_survive_a_restart():
    path = scratch("caps-restart")
    meter = FakeMeter(phases=1, block=False)
    poll(Metering(FakeTerminal(path, meter)))
    with open(path + "/meter_caps.json") as f:
        text = f.read()
    saved = json.loads(text)
    assert saved[A]["phases"] == 1 and BLOCK not in saved[A] and "0001FF00" in saved[A]["refused"]
    assert len(text) < 200, text  # small: one line per meter
    # a new boot: the same flash, a fresh terminal and master
    meter2 = FakeMeter(phases=1, block=False)
    m2 = Metering(FakeTerminal(path, meter2))
    poll(m2, 4)
    for di in (BLOCK, V_B, I_B):
        assert di not in meter2.asked
    assert meter2.stats == {"abnormal": 0, "refused": 0}


def test_daily_reprobe_asks_again_without_counting_known_refusals():
    meter = FakeMeter(phases=1)
    m = Metering(FakeTerminal(scratch("caps-daily"), meter))
    poll(m, 96)  # a day at 900 s: the 97th poll is a day after the first
    assert meter.asked.count(V_B) == 1
    poll(m)
    assert meter.asked.count(V_B) == 2  # probed again
    assert meter.stats["abnormal"] == 2 and meter.stats["refused"] == 2  # known: not errors
    poll(m, 4)
    assert meter.asked.count(V_B) == 2


def test_reprobe_after_meter_comes_back_online():
    meter = FakeMeter(phases=1)
    t = FakeTerminal(scratch("caps-online"), meter)
    m = Metering(t)
    poll(m)
    meter.silent = True
    poll(m, 3)
    assert t.events == ["meter_offline"]
    meter.silent = False
    poll(m)  # back: meter_online
    assert t.events == ["meter_offline", "meter_online"]
    n = meter.asked.count(V_B)
    poll(m)
    assert meter.asked.count(V_B) == n + 1  # the next read probes
    assert meter.stats["abnormal"] == 2 and meter.stats["refused"] == 2  # B voltage and current, known
    poll(m, 2)
    assert meter.asked.count(V_B) == n + 1


def test_a_meter_that_gains_an_item_is_learned_at_the_probe():
    path = scratch("caps-gain")
    caps = MeterCaps(path)
    assert caps.begin(A, 1000)
    caps.learn(A, V_B, True)
    caps.end(A, 1000, True)
    assert caps.skip(A, V_B) and caps.phases(A) == 1
    assert not caps.begin(A, 2000)
    caps.end(A, 2000, True)
    caps.reprobe(A)
    assert caps.begin(A, 3000) and not caps.skip(A, V_B) and caps.refuses(A, V_B)
    caps.learn(A, V_B, False)
    caps.end(A, 3000, True)
    assert not caps.refuses(A, V_B) and caps.phases(A) == 3
    assert MeterCaps(path).phases(A) == 3


def test_an_unfinished_probe_is_repeated():
    caps = MeterCaps(scratch("caps-unfinished"))
    assert caps.begin(A, 1000)
    caps.learn(A, V_B, True)
    caps.end(A, 1000, False)  # the meter went silent half way
    assert caps.begin(A, 1900)


def test_clock_from_another_base_does_not_force_a_probe():
    # after a reset without time the clock counts from boot: a small `now` must not trigger a probe
    path = scratch("caps-clock")
    caps = MeterCaps(path)
    caps.begin(A, 1795430400)
    caps.end(A, 1795430400, True)
    caps2 = MeterCaps(path)
    assert not caps2.begin(A, 30)
    assert not caps2.begin(A, 30 + 86399)
    assert caps2.begin(A, 30 + 86400)


def test_malformed_file_means_probe_again_not_a_crash():
    path = scratch("caps-bad")
    for text in ("{not json", "[1, 2]", '{"%s": {"ts": "x", "refused": []}}' % A, '{"%s": {"refused": ["zz"]}}' % A):
        with open(path + "/meter_caps.json", "w") as f:
            f.write(text)
        log = FakeLog()
        caps = MeterCaps(path, log)
        assert caps.begin(A, 1000), text
        assert log.lines and log.lines[0][0] == "warning", text


def test_inst_values_keep_the_meters_decimals():
    # regression: inst values went out as floats, e.g. "p":0.8957000000000001
    meter = FakeMeter(phases=3)
    m = Metering(FakeTerminal(scratch("caps-exact"), meter))
    r = poll(m)[0]
    text = payloads.dumps(payloads.energy(r["ts"], r["tsrc"], A, r["kwh"], r["inst"]))
    for part in ('"p":0.8957', '"pf":0.980', '"f":50.01', '"v":[229.8,230.1,230.4]', '"i":[1.234,0.500,0.000]'):
        assert part in text, text


def test_debug_logs_one_line_per_reading():
    meter = FakeMeter(phases=1)
    t = FakeTerminal(scratch("caps-debug"), meter, log_level="debug")
    m = Metering(t)
    poll(m, 3)
    lines = [text for level, text in t.log.lines if level == "debug"]
    assert len(lines) == 3, lines
    assert A in lines[0] and '"fwd":1234.56' in lines[0] and '"p":0.8957' in lines[0]
    quiet = FakeTerminal(scratch("caps-quiet"), FakeMeter(phases=1))
    poll(Metering(quiet), 2)
    assert not [1 for level, _ in quiet.log.lines if level == "debug"]


def test_a_refusal_noted_outside_the_poll_is_kept_and_deferred_during_a_probe():
    d = scratch("caps-note")
    caps = MeterCaps(d)
    caps.begin(A, 1000)
    caps.end(A, 1000, True)  # probed: its capabilities are kept on flash
    saves = caps.saves
    caps.note(A, 0x0001FF01, True)  # e.g. the settlement block, read by another task
    assert caps.refuses(A, 0x0001FF01) and caps.saves == saves + 1
    caps.note(A, 0x0001FF01, True)  # nothing new: not written again
    assert caps.saves == saves + 1
    assert MeterCaps(d).refuses(A, 0x0001FF01)
    caps.begin(A, 1000 + 86400)  # a daily re-probe under way: its end writes everything at once
    caps.note(A, 0x00020001, True)
    assert caps.saves == saves + 1 and caps.refuses(A, 0x00020001)
    caps.end(A, 1000 + 86400, True)
    assert MeterCaps(d).refuses(A, 0x00020001)
