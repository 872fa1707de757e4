"""The update task's rules with a stand-in terminal, under the unix port (firmware asyncio is MicroPython's).

    micropython tests/port/mp/update_task.py <scratch dir>

Prints `PASS name` / `FAIL name` lines and a closing `N passed, N failed`.
"""

import asyncio
import sys
import time

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib", _root, _root + "/tests/unit"]

import edsign  # noqa: E402
from firmware import VERSION, slots  # noqa: E402
from firmware import update as updmod  # noqa: E402
from firmware.auth import Refused  # noqa: E402

updmod._CONFIRM_MIN_S = 1
PUB = "".join("%02x" % b for b in edsign.public(bytes(range(32))))


class Clock:
    def __init__(self):
        self.t0 = time.ticks_ms()

    def uptime_s(self):
        return time.ticks_diff(time.ticks_ms(), self.t0) / 1000


class Uplink:
    def __init__(self, connected):
        self.connected = connected
        self.connects = 1
        self.sent = []

    async def publish(self, leaf, text, qos=1, retain=False):
        self.sent.append((leaf, text))
        return self.connected


class Log:
    def info(self, *a):
        pass

    warning = error = info


class Terminal:
    def __init__(self, connected=True, pubkey=PUB, window=3):
        self.cfg = {"update_pubkey": pubkey, "update_confirm_s": window}
        self.clock = Clock()
        self.uplink = Uplink(connected)
        self.log = Log()
        self.events = []
        self.reset = None
        self._checkins = {}

    def checkin(self, task, allow_s=None):
        self._checkins[task] = (self.clock.uptime_s(), allow_s or 300)

    def checkins(self):
        return self._checkins

    def emit_event(self, kind, data=None):
        self.events.append((kind, data))

    def request_reset(self, why):
        self.reset = why


def _trial_root(d):
    import os

    for p in (d, d + "/app_a"):
        try:
            os.mkdir(p)
        except OSError:
            pass
    with open(d + "/app_a/.ok", "w") as f:
        f.write("x")
    slots.write(d, {"confirmed": "base", "ver": None, "trial": "a", "trial_ver": VERSION, "tries": 1})
    return d


async def _tasks_alive(t, names, seconds):
    end = t.clock.uptime_s() + seconds
    while t.clock.uptime_s() < end:
        for n in names:
            t.checkin(n)
        await asyncio.sleep(0.2)


async def _run_for(u, t, seconds, alive):
    task = asyncio.create_task(u.run())
    await _tasks_alive(t, alive, seconds)
    task.cancel()


def test_trial_confirms_when_online_and_every_task_checked_in(d):
    root = _trial_root(d + "/ok")
    t = Terminal()
    t.checkin("meter")  # before the start: must check in again
    u = updmod.Updater(t, root, "a")
    assert u.trial
    asyncio.run(_run_for(u, t, 2.5, ("meter", "uplink")))
    assert slots.read(root)["confirmed"] == "a" and t.reset is None
    assert ("update", {"state": "confirmed", "ver": VERSION}) in t.events


def test_trial_with_a_stuck_task_is_not_confirmed_and_resets(d):
    root = _trial_root(d + "/stuck")
    t = Terminal(window=3)
    t.checkin("gnss")  # checked in once at start, then never again
    u = updmod.Updater(t, root, "a")
    asyncio.run(_run_for(u, t, 4.5, ("meter",)))
    st = slots.read(root)
    assert st["confirmed"] == "base" and st["why"] == "not confirmed in 3 s" and t.reset == "update not confirmed"
    assert slots.boot(root)[0] == "base"  # and the reset goes back


def test_trial_without_link_is_not_confirmed(d):
    root = _trial_root(d + "/nolink")
    t = Terminal(connected=False, window=3)
    u = updmod.Updater(t, root, "a")
    asyncio.run(_run_for(u, t, 4.5, ("meter", "uplink")))
    assert slots.read(root).get("trial") == "a" and t.reset == "update not confirmed"


def test_offers_refused_without_key_while_on_trial_or_older(d):
    t = Terminal(pubkey="")
    u = updmod.Updater(t, d, "base")
    offer = {"ver": "9.0.0", "msize": 100, "sig": "00" * 64}

    async def call(u, args):
        try:
            await u.command(args)
        except Refused as e:
            return e.code
        return "ok"

    assert asyncio.run(call(u, offer)) == "no_update_key"
    root = _trial_root(d + "/busy")
    assert asyncio.run(call(updmod.Updater(Terminal(), root, "a"), offer)) == "busy"
    u = updmod.Updater(Terminal(), d, "base")
    assert asyncio.run(call(u, dict(offer, ver="0.0.1"))) == "downgrade_refused"
    assert asyncio.run(call(u, offer)) == "ok" and u.offered == "9.0.0"
    assert asyncio.run(call(u, dict(offer, ver="9.0.1"))) == "busy"  # one version at a time


def _interrupted_download(d, ver):
    import hashlib
    import json
    import os

    for p in (d, d + "/app_a"):
        try:
            os.mkdir(p)
        except OSError:
            pass
    h = "".join("%02x" % b for b in hashlib.sha256(b"v").digest())
    m = json.dumps({"app": "bdmeter", "ver": ver, "files": [["firmware/__init__.mpy", 1, h]]})
    sig = "".join("%02x" % b for b in edsign.sign(bytes(range(32)), m.encode()))
    offer = {"ver": ver, "msize": len(m), "sig": sig, "downgrade": False}
    with open(d + "/app_a/offer.json", "w") as f:
        f.write(json.dumps({"offer": offer, "manifest": m}))
    return d


def test_interrupted_download_resumes_only_if_still_newer(d):
    t = Terminal()
    u = updmod.Updater(t, _interrupted_download(d + "/newer", "9.9.9"), "base")
    asyncio.run(_run_for(u, t, 1, ("meter",)))
    assert u.offered == "9.9.9" and t.uplink.sent and '"f":"firmware/__init__.mpy"' in t.uplink.sent[0][1]
    t = Terminal()
    u = updmod.Updater(t, _interrupted_download(d + "/same", VERSION), "base")
    asyncio.run(_run_for(u, t, 1, ("meter",)))
    assert u.offered is None and not t.uplink.sent


def main(d):
    passed = failed = 0
    for name in sorted(k for k in globals() if k.startswith("test_")):
        try:
            globals()[name](d)
        except Exception as e:  # report every failure, keep going
            failed += 1
            print("FAIL", name)
            sys.print_exception(e, sys.stdout)
        else:
            passed += 1
            print("PASS", name)
    print("%d passed, %d failed" % (passed, failed))
    return failed


sys.exit(1 if main(sys.argv[1]) else 0)
