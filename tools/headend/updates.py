"""Offer a signed update bundle to terminals, serve its chunks, and follow each terminal to an outcome."""

import json
import os
import threading
import time

from tools.headend import sign
from tools.headend.mqttconn import as_broker, diagnose

FINAL = ("confirmed", "rolled_back", "failed")


class Rollout:
    """One bundle offered to some terminals over one MQTT connection; `run` returns each one's outcome.

    Chunk requests (`<prefix>/<tid>/upd`) for this bundle's version are answered from any terminal: the
    bundle is signed and public. Outcomes: the terminal's refusal (`error` of its answer), its `update`
    events' final state (`confirmed`, `rolled_back`, `failed`), or `no answer` / `timeout`.
    """

    def __init__(self, broker, bundle, prefix="bdmeter", downgrade=False, out=print):
        self.broker = as_broker(broker)  # 'host:port' or a Broker with account and TLS
        self.host, self.port = self.broker.host, self.broker.port
        self.bundle = bundle
        self.prefix = prefix
        self.downgrade = downgrade
        self.out = out
        self.served = 0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.state = {}  # tid -> {"state": .., ...}
        self.req_ids = {}  # request id -> tid

    def _on_message(self, client, userdata, msg):
        parts = msg.topic.split("/")
        if len(parts) != 3 or parts[0] != self.prefix:
            return
        tid, leaf = parts[1], parts[2]
        if leaf == "upd":
            ans = self.bundle.answer(msg.payload)
            if ans is not None:
                client.publish("%s/%s/updc" % (self.prefix, tid), ans, qos=0)
                with self.lock:
                    self.served += 1
            return
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        with self.lock:
            if tid not in self.state:
                return
            if leaf == "resp" and self.req_ids.get(body.get("id")) == tid:
                if body.get("ok"):
                    if self.state[tid].get("state") == "offered":  # events may overtake the answer
                        self._set(tid, {"state": "accepted"})
                else:
                    self._set(tid, {"state": "refused", "why": body.get("error")})
            elif leaf == "event" and body.get("kind") == "update":
                data = body.get("data") or {}
                if data.get("ver") == self.bundle.ver:
                    self._set(tid, data)

    def _set(self, tid, data):
        old = self.state.get(tid, {})
        if old.get("state") in FINAL + ("refused",):
            return
        self.state[tid] = dict(data)
        line = "%s: %s" % (tid, data.get("state"))
        if data.get("total"):
            line += " %d/%d bytes" % (data.get("done", 0), data["total"])
        if data.get("why"):
            line += " (%s)" % data["why"]
        self.out(line)
        self.changed.notify_all()

    def _done(self):
        return all(s.get("state") in FINAL + ("refused",) for s in self.state.values())

    def run(self, keys, timeout_s=1800.0):
        """Offer to every terminal of `keys` {tid: cmd_key hex}; wait for each outcome; return {tid: state dict}."""
        with self.lock:
            self.state = {tid: {"state": "offered"} for tid in keys}
        connected = threading.Event()
        refused = []

        def on_connect(client, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                refused.append(str(reason_code))
            else:
                client.subscribe([("%s/+/upd" % self.prefix, 0), ("%s/+/resp" % self.prefix, 1),
                                  ("%s/+/event" % self.prefix, 1)])

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            connected.set()

        client = self.broker.client("bdmeter-update-%s" % os.urandom(4).hex())
        client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, self._on_message
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        try:
            if not connected.wait(min(timeout_s, 10.0)):
                why = "the broker refused the connection: %s" % refused[-1] if refused else diagnose(self.broker)
                raise TimeoutError("no connection to the broker at %s%s" % (self.broker, " (%s)" % why if why else ""))
            for tid, key in keys.items():
                req_id, envelope = sign.command(key, tid, "update", self.bundle.offer(self.downgrade))
                with self.lock:
                    self.req_ids[req_id] = tid
                client.publish("%s/%s/cmd" % (self.prefix, tid), envelope, qos=1)
            deadline = time.monotonic() + timeout_s
            with self.lock:
                while not self._done():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.changed.wait(min(left, 1.0))
                for st in self.state.values():
                    if st.get("state") not in FINAL + ("refused",):
                        st["state"], st["why"] = "timeout", "last seen %s" % st.get("state")
                return {tid: dict(st) for tid, st in self.state.items()}
        finally:
            client.disconnect()
            client.loop_stop()
