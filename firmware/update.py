"""The update task: takes a signed offer, fetches the bundle in chunks over MQTT, stages it, switches, confirms.

Wire (docs/PROTOCOL.md "Update"): the terminal asks on `<prefix>/<tid>/upd` for one chunk at a time,
the head-end answers on `<prefix>/<tid>/updc`. Progress lives on flash (the spare slot itself), so a
lost link or a power cut resumes where the flash stopped. A new version confirms itself only when it is
online and every task has checked in since it started, within `update_confirm_s`; otherwise it asks
for a reset, and that reset boots the previous version (firmware/slots).
"""

import asyncio
import json
import os
from binascii import a2b_base64

from firmware import VERSION, payloads, slots
from firmware.auth import Refused

# firmware.staging (with lib/ed25519 and lib/sha512, ~14 KB of bytecode) is imported only when an update
# is offered or was cut short by a reset: a terminal that is not updating keeps that heap free.

CHUNK = 1024  # bytes per chunk: ~1.4 KB of base64 in an answer, well inside the 4 KB MQTT limit
_ANSWER_MS = 10000  # wait for one chunk before asking again
_MAX_SILENT = 30  # unanswered requests in a row while connected: the download stops (resumed on the next offer)
_CONFIRM_MIN_S = 10  # a new version runs at least this long before it may confirm itself
_PROGRESS_STEP = 25  # percent between progress events


class Updater:
    def __init__(self, t, root, slot):
        self.t = t
        self.root = root
        self.slot = slot  # the slot this code runs from
        key = t.cfg.get("update_pubkey") or ""
        self.pubkey = bytes.fromhex(key) if key else None
        self.state = "idle"
        self.offered = None  # version of the offer in hand
        self.progress = 0  # percent of the bundle on flash
        self.failed = 0
        self._offer = None
        self._answer = None
        self._wake = asyncio.Event()
        self._got = asyncio.Event()
        st = slots.read(root)
        self.trial = st.get("trial") == slot and slot != slots.BASE

    def summary(self):
        """For the full heartbeat and `status`: the state, and the version being fetched, if any."""
        out = {"state": self.state}
        if self.offered:
            out["ver"] = self.offered
            out["pct"] = self.progress
        return out

    # -- command and answers --------------------------------------------------
    async def command(self, args):
        """The `update` op: check the offer and hand it to the task; the answer says whether it was taken."""
        if self.pubkey is None:
            raise Refused("no_update_key")
        if self.trial:
            raise Refused("busy")  # a version on trial must confirm before it takes another
        from firmware import staging

        try:
            offer = staging.check_offer(args, VERSION)
        except staging.UpdateError as e:
            raise Refused(e.code)
        if self._offer is not None and self._offer["ver"] != offer["ver"]:
            raise Refused("busy")
        self._offer = offer
        self.offered = offer["ver"]
        self._wake.set()
        return {"accepted": offer["ver"], "from": VERSION}

    def incoming(self, msg):
        """MQTT callback for `updc`: keep the latest answer, parse it in the task."""
        self._answer = msg
        self._got.set()

    # -- the task -------------------------------------------------------------
    async def run(self):
        t = self.t
        self._report_last()
        if self.trial:
            await self._confirm()
        if self.pubkey and self._interrupted():
            from firmware import staging

            try:
                st = staging.Stager(self.root, self.pubkey, self.slot)
                if st.pending() is not None and self._offer is None:
                    staging.check_offer(st.offer, VERSION)  # still newer than what runs (or allowed older)
                    self._offer = st.offer  # a download cut by a reset: carry on
                    self.offered = st.offer["ver"]
            except staging.UpdateError:
                pass
        while True:
            t.checkin("update")
            if self._offer is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for_ms(self._wake.wait(), 5000)
                except asyncio.TimeoutError:
                    pass
                continue
            await self._apply(self._offer)

    def _interrupted(self):
        """A spare slot holds an accepted offer but no `.ok` mark: a download was cut short."""
        for s in slots.SLOTS:
            d = slots.slot_dir(self.root, s)
            try:
                os.stat(d + "/offer.json")
            except OSError:
                continue
            if not slots.complete(self.root, s):
                return True
        return False

    def _event(self, state, **data):
        data["state"] = state
        data.setdefault("ver", self.offered)
        self.state = state
        self.t.emit_event("update", data)

    def _report_last(self):
        st = slots.read(self.root)
        last = st.get("last")
        if isinstance(last, dict) and not last.get("reported"):
            data = {"state": last.get("result"), "ver": last.get("ver"), "running": VERSION}
            if last.get("why"):
                data["why"] = last["why"]
            self.t.emit_event("update", data)
            self.state = last.get("result") or "idle"
            slots.mark_reported(self.root)

    async def _confirm(self):
        """Confirm this trial version once it is online and every task has checked in since it started."""
        t = self.t
        window = t.cfg["update_confirm_s"]
        start = t.clock.uptime_s()
        self.state = "trial"
        while t.clock.uptime_s() - start < window:
            t.checkin("update")
            await asyncio.sleep(1)
            now = t.clock.uptime_s()
            if now - start < _CONFIRM_MIN_S or not t.uplink.connected:
                continue
            ins = t.checkins()
            if all(at > start and now - at <= allow for at, allow in ins.values()):
                if slots.confirm(self.root, self.slot):
                    slots.mark_reported(self.root)
                    self.trial = False
                    self._event("confirmed", ver=VERSION)
                return
        t.log.error("update: %s not confirmed within %d s; back to the previous version", VERSION, window)
        slots.fail(self.root, "not confirmed in %d s" % window)
        t.request_reset("update not confirmed")
        while True:  # the reset is coming: nothing else to do
            t.checkin("update")
            await asyncio.sleep(1)

    async def _fetch(self, ver, f, off, n):
        """One chunk: asked again after each silence; waits while the link is down. None when it gives up."""
        t = self.t
        silent = 0
        while silent < _MAX_SILENT:
            t.checkin("update")
            if not t.uplink.connected:
                await asyncio.sleep(2)  # link loss: the download resumes once the uplink is back
                continue
            self._got.clear()
            self._answer = None
            req = payloads.dumps({"v": payloads.V, "ver": ver, "f": f, "off": off, "n": n})
            connects = t.uplink.connects
            await t.uplink.publish("upd", req, qos=0)
            deadline = _ANSWER_MS
            while deadline > 0:
                if t.uplink.connects != connects or not t.uplink.connected:
                    break  # the link dropped: the request died with it, ask again once it is back
                try:
                    await asyncio.wait_for_ms(self._got.wait(), 1000)
                except asyncio.TimeoutError:
                    deadline -= 1000
                    t.checkin("update")
                    continue
                self._got.clear()
                data = self._parse(self._answer, ver, f, off)
                if data is not None:
                    return data
                deadline -= 100  # a stale or foreign answer: a flood of them still ends the wait
            else:
                silent += 1
        return None

    def _parse(self, msg, ver, f, off):
        try:
            a = json.loads(msg)
            if a.get("ver") != ver or a.get("f") != f or a.get("off") != off:
                return None  # an answer to another request
            if a.get("error"):
                from firmware.staging import UpdateError

                raise UpdateError("truncated" if a["error"] == "range" else "not_served", str(a["error"])[:40])
            return a2b_base64(a["data"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    async def _apply(self, offer):
        from firmware import staging
        from firmware.staging import UpdateError

        t = self.t
        ver = offer["ver"]
        st = None
        try:
            st = staging.Stager(self.root, self.pubkey, self.slot)
            if not (st.pending() is not None and st.same(offer)):
                self._event("fetching", step="manifest")
                m = bytearray()
                while len(m) < offer["msize"]:
                    data = await self._fetch(ver, staging.MANIFEST, len(m), min(CHUNK, offer["msize"] - len(m)))
                    if data is None:
                        raise UpdateError("no_answer")
                    if not data:
                        raise UpdateError("truncated", "manifest")
                    m.extend(data)
                st.take_manifest(offer, m)
            done, total = st.progress()
            self._event("downloading", done=done, total=total)
            step = 0
            while True:
                req = st.next_request(CHUNK)
                if req is None:
                    break
                data = await self._fetch(ver, req[0], req[1], req[2])
                if data is None:
                    raise UpdateError("no_answer")
                st.accept(req[0], req[1], data)
                done, total = st.progress()
                self.progress = done * 100 // max(total, 1)
                if self.progress >= step + _PROGRESS_STEP:
                    step = self.progress - self.progress % _PROGRESS_STEP
                    self._event("downloading", done=done, total=total)
                await asyncio.sleep(0)
            slot = st.finish()
            self.progress = 100
            self._event("staged", slot=slot)
            t.request_reset("update to %s" % ver)
            self._offer = None
        except UpdateError as e:
            self.failed += 1
            t.log.warning("update %s failed: %s", ver, e)
            if e.code != "no_answer" and st is not None:
                staging.abandon(self.root, st.slot)  # never bootable; a new offer starts clean
            self._event("failed", why=e.code)
            self._offer = None
        except OSError as e:
            self.failed += 1
            t.log.error("update %s: flash error %s", ver, e)
            self._event("failed", why="flash")
            self._offer = None
