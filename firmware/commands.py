"""Server requests: authenticate, run the op, answer on `resp` with the request id."""

import asyncio

from firmware import config, payloads
from firmware.auth import MAX_ENVELOPE, Auth, Refused

_QUEUE_MAX = 8  # commands waiting to run; past it the oldest are dropped and counted (a flood, not a server)
_QUERY_WHAT = ("address", "position", "energy")


class Commands:
    def __init__(self, t):
        self.t = t
        cfg = t.cfg
        self.auth = Auth(t.tid, cfg["cmd_key"], cfg["cmd_max_skew_s"], cfg["state_dir"] + "/nonces.bin", t.log)
        self.executed = 0
        self.dropped = 0
        self._queue = []
        self._ready = asyncio.Event()
        self._ops = {
            "query": self._query,
            "read": self._read,
            "status": self._status,
            "config.get": self._config_get,
            "config.set": self._config_set,
            "sync_time": self._sync_time,
            "reboot": self._reboot,
        }

    @property
    def refused(self):
        return self.auth.refused

    def incoming(self, topic, msg):
        """MQTT callback (runs in the session's reader): queue, never work here.

        What is too large to be a command is not kept: only the fact is queued, to be answered `too_large`,
        so a full queue holds at most _QUEUE_MAX envelopes of MAX_ENVELOPE bytes. A full queue (a flood)
        gives up its oldest: what the server sends after a flood is still run."""
        if len(self._queue) >= _QUEUE_MAX:
            self.dropped += 1
            self._queue.pop(0)
        self._queue.append(None if len(msg) > MAX_ENVELOPE else msg)
        self._ready.set()

    async def run(self):
        t = self.t
        while True:
            t.checkin("cmd")
            if not self._queue:
                self._ready.clear()
                try:
                    await asyncio.wait_for_ms(self._ready.wait(), 5000)
                except asyncio.TimeoutError:
                    pass
                continue
            msg = self._queue.pop(0)
            await self.handle(msg)

    async def handle(self, msg):
        t = self.t
        now = t.clock.now()
        try:
            if msg is None:
                self.auth.refused += 1
                raise Refused("too_large")
            body = self.auth.check(msg, now, t.clock.source in ("gnss", "net", "rtc"))
        except Refused as e:
            t.log.warning("command refused: %s", e.code)
            await self._answer(e.id, error=e.code)
            return
        op = self._ops.get(body["op"])
        if op is None:
            self.auth.refused += 1
            await self._answer(body["id"], error="unknown_op")
            return
        try:
            result = await op(body["args"])
        except Refused as e:
            self.auth.refused += 1
            t.log.warning("command %s refused: %s", body["op"], e.code)
            await self._answer(body["id"], error=e.code)
            return
        self.executed += 1
        t.log.info("command %s (%s) done", body["op"], body["id"])
        await self._answer(body["id"], result=result)
        if body["op"] == "reboot":
            t.request_reset("command")

    async def _answer(self, req_id, result=None, error=None):
        ts, tsrc = self.t.clock.stamp()
        await self.t.uplink.publish("resp", payloads.resp(req_id, ts, tsrc, result, error), qos=1)

    # -- ops -----------------------------------------------------------------
    async def _query(self, args):
        what = args.get("what", list(_QUERY_WHAT))
        if isinstance(what, str):
            what = [what]
        if not isinstance(what, list) or not what or any(w not in _QUERY_WHAT for w in what):
            raise Refused("bad_args")
        t = self.t
        out = {}
        if "address" in what:
            out["address"] = list(t.meters)
        if "position" in what:
            pos = t.locating.pos.as_dict()
            if pos is not None:
                pos["fix"] = t.locating.fix
            out["position"] = pos
        if "energy" in what:
            out["energy"] = dict(t.metering.last)
        return out

    async def _read(self, args):
        t = self.t
        out = {}
        for addr in t.meters:
            reading = await t.metering.poll_and_store(addr)
            if reading is not None:
                out[addr] = reading
        return {"energy": out}

    async def _status(self, args):
        return self.t.heartbeat_body()

    async def _config_get(self, args):
        keys = args.get("keys") or []
        if not isinstance(keys, list) or any(not isinstance(k, str) for k in keys):
            raise Refused("bad_args")
        for k in keys:
            if k in config.SECRETS or k not in self.t.cfg:
                raise Refused("forbidden_key")
        return {"config": config.redacted(self.t.cfg, keys)}

    async def _config_set(self, args):
        changes = args.get("set")
        if not isinstance(changes, dict) or not changes:
            raise Refused("bad_args")
        for k in changes:
            if k not in config.SETTABLE:
                raise Refused("forbidden_key")
        try:
            checked = {k: config.check(k, v) for k, v in changes.items()}
        except config.ConfigError:
            raise Refused("bad_args")
        try:
            self.t.apply_config(checked)
        except OSError:
            raise Refused("save_failed")  # not persisted, so not applied: the server must not believe it was
        return {"config": config.redacted(self.t.cfg, list(checked))}

    async def _sync_time(self, args):
        if not self.t.clock.agreed or not await self.t.metering.sync_time():
            raise Refused("no_clock")
        ts, tsrc = self.t.clock.stamp()
        return {"sent": True, "ts": ts, "tsrc": tsrc}

    async def _reboot(self, args):
        return {"rebooting": True}
