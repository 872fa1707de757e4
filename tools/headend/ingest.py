"""Turns terminal messages into database rows: validation, exactly-once records, online/silent/offline."""

import json
import logging
import time

from tools.headend import contract, meter_records, rows
from tools.headend.store import overdue

log = logging.getLogger("bdmeter.headend")

SILENT_FACTOR = 2.5
HB_GAPS_KEPT = 3
# gaps shorter than this are redeliveries, not the heartbeat period
HB_MIN_GAP_S = 0.05


class Ingest:
    """`handle(topic, payload)` stores one message; `check_silent()` flags overdue heartbeats."""

    def __init__(self, store, prefix="bdmeter", heartbeat_s=None, silent_factor=SILENT_FACTOR):
        if not contract.valid_id(prefix):
            raise ValueError("bad topic prefix %r" % prefix)
        self.store = store
        self.prefix = prefix
        self.heartbeat_s = heartbeat_s
        self.silent_factor = silent_factor

    def handle(self, topic, payload, now=None, retained=False):
        """Validate and store one message; return stored/duplicate/conflict/invalid/ignored."""
        now = time.time() if now is None else now
        with self.store.tx():
            return self._one(topic, payload, now, retained)

    def handle_many(self, messages, now=None):
        """Store (topic, payload, retained) messages in one transaction; return their outcomes."""
        now = time.time() if now is None else now
        with self.store.tx():
            return [self._one(topic, payload, now, retained) for topic, payload, retained in messages]

    def _one(self, topic, payload, now, retained):
        warnings = []
        try:
            tid, leaf, obj = contract.parse(topic, payload, self.prefix, warnings)
        except contract.ContractError as e:
            log.warning("invalid message on %s: %s", topic[:80], e)
            self.store.reject(topic, str(e), payload, now)
            return "invalid"
        if obj is None:
            # our own commands come back through the wildcard subscription
            self.store.bump("ignored")
            return "ignored"
        for w in warnings:
            # one counter per kind of deviation: bounded, and `status` shows them
            if self.store.bump("warning " + w) == 1:
                log.warning("message on %s deviates from the contract: %s", topic[:80], w)
        self.store.touch(tid, now)
        return getattr(self, "_" + leaf)(tid, obj, now, retained)

    def check_silent(self, now=None):
        """Mark online terminals whose heartbeat is overdue as silent; return their ids."""
        now = time.time() if now is None else now
        newly = []
        with self.store.tx() as db:
            for row in db.execute("SELECT * FROM terminals WHERE state = 'online'").fetchall():
                if overdue(row, now, self.heartbeat_s, self.silent_factor):
                    self.store.transition(row["tid"], "silent", "heartbeat_overdue", now)
                    newly.append(row["tid"])
        for tid in newly:
            log.warning("terminal %s silent: heartbeat overdue", tid)
        return newly

    def _record(self, tid, obj, now, kind, add):
        inc, seq = contract.record_inc(obj), obj["seq"]
        values = rows.content(kind, obj)
        outcome = self.store.claim_record(tid, inc, seq, kind, rows.fingerprint(kind, values), now)
        if outcome == "stored":
            add(tid, inc, obj, values, now)
        elif outcome == "conflict":
            # same key, different content: never dropped silently; kept aside for a person to look at
            self.store.add_conflict(tid, inc, seq, kind, obj, now)
            log.warning("terminal %s sent %s inc %r seq %d whose content differs from the record stored under"
                        " that key: kept in table conflicts", tid, kind, inc, seq)
        self.store.bump(outcome)
        return outcome

    def _register(self, tid, obj, now, retained):
        return self._record(tid, obj, now, "register", self.store.add_registration)

    def _energy(self, tid, obj, now, retained):
        return self._record(tid, obj, now, "energy", self.store.add_reading)

    def _event(self, tid, obj, now, retained):
        return self._record(tid, obj, now, "event", self.store.add_event)

    def _frozen(self, tid, obj, now, retained):
        return self._record(tid, obj, now, "frozen",
                            lambda *a: meter_records.add_frozen(self.store, *a))

    def _settle(self, tid, obj, now, retained):
        return self._record(tid, obj, now, "settle",
                            lambda *a: meter_records.add_settle(self.store, *a))

    def _meter_event(self, tid, obj, now, retained):
        return self._record(tid, obj, now, "meter_event",
                            lambda *a: meter_records.add_meter_event(self.store, *a))

    def _resp(self, tid, obj, now, retained):
        self.store.add_response(tid, obj, now)
        self.store.bump("resp")
        return "stored"

    def _heartbeat(self, tid, obj, now, retained):
        self.store.add_heartbeat(tid, obj, now)
        row = self.store.terminal(tid)
        gaps = json.loads(row["hb_gaps"]) if row["hb_gaps"] else []
        if row["last_hb"] is not None and now - row["last_hb"] >= HB_MIN_GAP_S:
            gaps = (gaps + [round(now - row["last_hb"], 3)])[-HB_GAPS_KEPT:]
        # the smallest recent gap: one lost heartbeat (QoS 0) does not double the learned period,
        # and a longer configured period is learned after HB_GAPS_KEPT beats
        self.store.set_heartbeat_timing(tid, now, gaps, min(gaps) if gaps else None)
        if row["state"] != "online":
            self.store.transition(tid, "online", "heartbeat", now)
        self.store.bump("heartbeat")
        return "stored"

    def _status(self, tid, obj, now, retained):
        state = obj["state"]
        row = self.store.terminal(tid)
        self.store.bump("status")
        if retained and row["status_state"] == state:
            # the broker replays the retained status on every (re)subscribe: nothing new
            return "stored"
        self.store.set_status(tid, state, now)
        if state == "online":
            self.store.set_fw(tid, obj["fw"])
            self.store.transition(tid, "online", "status", now)
        else:
            self.store.transition(tid, "offline", obj.get("why") or "will", now)
        return "stored"
