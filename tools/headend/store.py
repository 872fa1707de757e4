"""The head-end's SQLite database (WAL): terminals, records de-duplicated by (tid, inc, seq), health, counters."""

import json
import logging
import sqlite3
import threading
import time
from contextlib import contextmanager

from tools.headend import keyring, rows, schema
from tools.headend.rows import KWH_COLUMNS, dumps as _dumps  # noqa: F401 (KWH_COLUMNS is part of the API)

log = logging.getLogger("bdmeter.headend")

REJECT_PAYLOAD_MAX = 512
GAP_RANGES_MAX = 20


class Store:
    """One SQLite connection, shared by threads under a lock; every write runs in `tx()`.

    The SQL is the dialect SQLite and PostgreSQL share (pgstore.py adapts placeholders and types); the
    two-argument maximum is spelled GREATEST."""

    GREATEST = "max"
    BACKEND = "sqlite"

    def __init__(self, path, timeout_s=10.0):
        self.path = str(path)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        with self.lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a process crash; only an OS crash can lose the last ones
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.migrated = False
            if self.db.execute("PRAGMA user_version").fetchone()[0] != schema.VERSION:
                # created or upgraded in one write transaction, so concurrent workers wait for it; a current
                # database is opened without taking the write lock (status and report only read)
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    self.migrated = schema.ensure(self.db)
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")

    def close(self):
        with self.lock:
            self.db.close()

    @contextmanager
    def tx(self):
        """A write transaction (BEGIN IMMEDIATE so concurrent workers queue instead of failing)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def query(self, sql, args=()):
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    # -- writes (inside tx) ------------------------------------------------------------------------

    def bump(self, name, n=1):
        """Add `n` to a counter; return its new value."""
        return self.db.execute("INSERT INTO counters(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE"
                               " SET value = counters.value + excluded.value RETURNING value",
                               (name, n)).fetchone()[0]

    def reject(self, topic, reason, payload, now):
        self.db.execute("INSERT INTO rejects(at, topic, reason, payload) VALUES(?,?,?,?)",
                        (now, topic[:200], reason, bytes(payload[:REJECT_PAYLOAD_MAX])))
        self.bump("invalid")

    def touch(self, tid, now):
        self.db.execute("INSERT INTO terminals(tid, first_seen, last_seen) VALUES(?,?,?) ON CONFLICT(tid)"
                        " DO UPDATE SET last_seen = %s(terminals.last_seen, excluded.last_seen)" % self.GREATEST,
                        (tid, now, now))

    def terminal(self, tid):
        return self.db.execute("SELECT * FROM terminals WHERE tid = ?", (tid,)).fetchone()

    def claim_record(self, tid, inc, seq, kind, digest, now):
        """'stored' the first time (tid, inc, seq) is seen; 'duplicate' for a redelivery with the same
        content; 'conflict' when the stored record under that key has different content."""
        cur = self.db.execute("INSERT INTO records(tid, inc, seq, kind, received, digest)"
                              " VALUES(?,?,?,?,?,?) ON CONFLICT DO NOTHING", (tid, inc, seq, kind, now, digest))
        if cur.rowcount == 0:
            row = self.db.execute("SELECT kind, digest FROM records WHERE tid = ? AND inc = ? AND seq = ?",
                                  (tid, inc, seq)).fetchone()
            same = row["kind"] == kind and (row["digest"] is None or row["digest"] == digest)
            return "duplicate" if same else "conflict"
        if self.db.execute("INSERT INTO incarnations(tid, inc, first_seen) VALUES(?,?,?) ON CONFLICT DO NOTHING",
                           (tid, inc, now)).rowcount:
            prev = self.db.execute("SELECT inc FROM terminals WHERE tid = ?", (tid,)).fetchone()
            if prev is not None and prev["inc"] is not None:
                log.warning("terminal %s: new outbox incarnation %r after %r (outbox state replaced); seq %d",
                            tid, inc, prev["inc"], seq)
            self.db.execute("UPDATE terminals SET inc = ?, last_seq = ? WHERE tid = ?", (inc, seq, tid))
        else:
            self.db.execute("UPDATE terminals SET last_seq = %s(coalesce(last_seq, 0), ?) WHERE tid = ? AND inc = ?"
                            % self.GREATEST, (seq, tid, inc))
        return "stored"

    def add_conflict(self, tid, inc, seq, kind, m, now):
        """Keep a record whose (tid, inc, seq) was already stored with different content."""
        stored = self.db.execute("SELECT kind FROM records WHERE tid = ? AND inc = ? AND seq = ?",
                                 (tid, inc, seq)).fetchone()
        self.db.execute("INSERT INTO conflicts(tid, inc, seq, kind, received, stored_kind, message)"
                        " VALUES(?,?,?,?,?,?,?)",
                        (tid, inc, seq, kind, now, stored["kind"] if stored else None, _dumps(m)))

    def _insert(self, kind, tid, inc, seq, values, now):
        cols = ("tid", "inc", "seq") + rows.COLUMNS[kind] + ("received",)
        self.db.execute("INSERT INTO %s(%s) VALUES(%s)" % (rows.TABLE[kind], ", ".join(cols),
                                                           ",".join("?" * len(cols))),
                        (tid, inc, seq) + tuple(values) + (now,))

    def add_registration(self, tid, inc, m, values, now):
        self._insert("register", tid, inc, m["seq"], values, now)
        self.db.executemany("INSERT INTO registration_meters(meter, tid, inc, seq) VALUES(?,?,?,?)"
                            " ON CONFLICT DO NOTHING",
                            [(a, tid, inc, m["seq"]) for a in m["meters"]])
        pos = m.get("pos") or {}
        # the terminal's current view is its newest registration; an older one replayed late changes nothing.
        # Newest: a higher seq of the same outbox incarnation, or any seq of an incarnation first seen later.
        self.db.execute(
            "UPDATE terminals SET reg_inc = ?, reg_seq = ?, meters = ?, imei = ?, iccid = ?, fw = coalesce(?, fw),"
            " csq = ?, lat = coalesce(?, lat), lon = coalesce(?, lon), alt = coalesce(?, alt)"
            " WHERE tid = ? AND (reg_seq IS NULL"
            "  OR (coalesce(reg_inc, '') = ? AND reg_seq < ?)"
            "  OR (coalesce(reg_inc, '') != ? AND"
            "      (SELECT first_seen FROM incarnations i WHERE i.tid = terminals.tid"
            "       AND i.inc = coalesce(terminals.reg_inc, '')) <="
            "      (SELECT first_seen FROM incarnations i WHERE i.tid = terminals.tid AND i.inc = ?)))",
            (inc, m["seq"], _dumps(m["meters"]), m.get("imei"), m.get("iccid"), m.get("fw"), m.get("csq"),
             pos.get("lat"), pos.get("lon"), pos.get("alt"), tid, inc, m["seq"], inc, inc))

    def add_reading(self, tid, inc, m, values, now):
        self._insert("energy", tid, inc, m["seq"], values, now)

    def add_event(self, tid, inc, m, values, now):
        self._insert("event", tid, inc, m["seq"], values, now)

    def add_heartbeat(self, tid, m, now):
        fix = m.get("fix")
        self.db.execute(
            "INSERT INTO heartbeats(tid, received, ts, tsrc, up, csq, fix, nsat, outbox, heap, heap_peak, reset, err)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (tid, now, int(m["ts"]), m["tsrc"], m["up"], m.get("csq"), None if fix is None else int(fix),
             m.get("nsat"), m.get("outbox"), m.get("heap"), m.get("heap_peak"), m.get("reset"),
             _dumps(m["err"]) if "err" in m else None))
        if m.get("csq") is not None:
            self.db.execute("UPDATE terminals SET csq = ? WHERE tid = ?", (m["csq"], tid))

    def add_response(self, tid, m, now):
        self.db.execute(
            "INSERT INTO responses(tid, id, ok, ts, tsrc, result, error, received) VALUES(?,?,?,?,?,?,?,?)"
            " ON CONFLICT(tid, id) DO UPDATE SET ok = excluded.ok, ts = excluded.ts, tsrc = excluded.tsrc,"
            " result = excluded.result, error = excluded.error, received = excluded.received",
            (tid, m["id"], int(m["ok"]), int(m["ts"]), m["tsrc"],
             _dumps(m["result"]) if "result" in m else None, m.get("error"), now))

    def set_heartbeat_timing(self, tid, last_hb, gaps, interval_s):
        self.db.execute("UPDATE terminals SET last_hb = ?, hb_gaps = ?, hb_interval_s = ? WHERE tid = ?",
                        (last_hb, _dumps(gaps), interval_s, tid))

    def set_status(self, tid, state, now):
        self.db.execute("UPDATE terminals SET status_state = ?, status_at = ? WHERE tid = ?", (state, now, tid))

    def set_fw(self, tid, fw):
        self.db.execute("UPDATE terminals SET fw = ? WHERE tid = ?", (fw, tid))

    def transition(self, tid, state, why, now):
        """Set the terminal's state; log a transition only when it changes. True if it changed."""
        row = self.db.execute("SELECT state FROM terminals WHERE tid = ?", (tid,)).fetchone()
        if row is not None and row["state"] == state:
            return False
        self.db.execute("UPDATE terminals SET state = ?, state_since = ? WHERE tid = ?", (state, now, tid))
        self.db.execute("INSERT INTO transitions(tid, at, state, why) VALUES(?,?,?,?)", (tid, now, state, why))
        return True

    # -- keys ----------------------------------------------------------------------------------------

    def set_key(self, tid, key_hex):
        """Store a terminal's command key, encrypted when a master key is configured (keyring.py)."""
        value = keyring.seal(tid, key_hex)
        with self.tx() as db:
            db.execute("INSERT INTO keys(tid, key_hex) VALUES(?, ?) ON CONFLICT(tid) DO UPDATE"
                       " SET key_hex = excluded.key_hex", (tid, value))

    def key(self, tid):
        """The terminal's command key as hex (decrypted), or None."""
        rows = self.query("SELECT key_hex FROM keys WHERE tid = ?", (tid,))
        return keyring.unseal(tid, rows[0]["key_hex"]) if rows else None

    # -- reads -----------------------------------------------------------------------------------------

    def counters(self):
        return {r["name"]: r["value"] for r in self.query("SELECT name, value FROM counters")}

    def count(self, table):
        if table not in ("records", "registrations", "readings", "heartbeats", "events", "responses",
                         "transitions", "rejects", "terminals", "conflicts", "incarnations"):
            raise ValueError(table)
        return self.query("SELECT count(*) AS n FROM %s" % table)[0]["n"]

    def response(self, tid, req_id):
        rows = self.query("SELECT * FROM responses WHERE tid = ? AND id = ?", (tid, req_id))
        return dict(rows[0]) if rows else None

    def transitions(self, tid):
        return [(r["state"], r["why"]) for r in
                self.query("SELECT state, why FROM transitions WHERE tid = ? ORDER BY id", (tid,))]

    def incarnations(self, tid=None):
        """Per (terminal, outbox incarnation), oldest first: records stored, seq range, missing seqs.

        An incarnation's seq starts at 1, so every seq from 1 to the highest received that is not
        stored is missing (lost, or still on its way); `gaps` lists the first missing ranges."""
        where, args = ("WHERE r.tid = ?", (tid,)) if tid is not None else ("", ())
        out = []
        with self.lock:
            for r in self.db.execute(
                    "SELECT r.tid, r.inc, count(*) AS n, min(r.seq) AS lo, max(r.seq) AS hi, i.first_seen"
                    " FROM records r LEFT JOIN incarnations i ON i.tid = r.tid AND i.inc = r.inc %s"
                    " GROUP BY r.tid, r.inc, i.first_seen ORDER BY r.tid, i.first_seen, r.inc" % where,
                    args).fetchall():
                missing = r["hi"] - r["n"]
                out.append({"tid": r["tid"], "inc": r["inc"], "first_seen": r["first_seen"], "records": r["n"],
                            "first_seq": r["lo"], "last_seq": r["hi"], "missing": missing,
                            "gaps": self._gaps(r["tid"], r["inc"], r["lo"]) if missing else []})
        return out

    def _gaps(self, tid, inc, lo):
        gaps = [[1, lo - 1]] if lo > 1 else []
        for g in self.db.execute(
                "SELECT seq + 1 AS a, nxt - 1 AS b FROM (SELECT seq, lead(seq) OVER (ORDER BY seq) AS nxt"
                " FROM records WHERE tid = ? AND inc = ?) AS g WHERE nxt > seq + 1 LIMIT ?",
                (tid, inc, GAP_RANGES_MAX)):
            gaps.append([g["a"], g["b"]])
        return gaps[:GAP_RANGES_MAX]

    def conflicts(self, limit=100):
        return [dict(r) for r in self.query("SELECT * FROM conflicts ORDER BY id LIMIT ?", (limit,))]

    def _latest_energy(self, tid):
        """The newest reading per meter: the highest seq of the newest outbox incarnation holding the meter."""
        energy = {}
        incs = self.db.execute("SELECT inc FROM incarnations WHERE tid = ? ORDER BY first_seen DESC, inc DESC",
                               (tid,)).fetchall()
        for i in incs:
            for r in self.db.execute(
                    "SELECT r.meter, r.fwd, r.ts, r.tsrc FROM readings r"
                    " JOIN (SELECT meter, max(seq) AS seq FROM readings WHERE tid = ? AND inc = ? GROUP BY meter) last"
                    " ON r.meter = last.meter AND r.seq = last.seq WHERE r.tid = ? AND r.inc = ?",
                    (tid, i["inc"], tid, i["inc"])):
                energy.setdefault(r["meter"], {"fwd": r["fwd"], "ts": r["ts"], "tsrc": r["tsrc"]})
        return energy

    def fleet(self, now=None, heartbeat_s=None, silent_factor=2.5):
        """One dict per terminal: id, meters, position, last energy per meter, last seen, state."""
        now = time.time() if now is None else now
        out = []
        with self.lock:
            for t in self.db.execute("SELECT * FROM terminals ORDER BY tid").fetchall():
                meters = json.loads(t["meters"]) if t["meters"] else []
                energy = self._latest_energy(t["tid"])
                for a in sorted(energy):
                    if a not in meters:
                        meters.append(a)
                out.append({
                    "tid": t["tid"], "meters": meters, "lat": t["lat"], "lon": t["lon"], "alt": t["alt"],
                    "energy": energy, "last_seen": t["last_seen"], "last_hb": t["last_hb"],
                    "hb_interval_s": t["hb_interval_s"], "csq": t["csq"], "fw": t["fw"], "inc": t["inc"],
                    "state": effective_state(t, now, heartbeat_s, silent_factor),
                })
        return out


def effective_state(row, now, heartbeat_s=None, silent_factor=2.5):
    """The stored state, turned to `silent` when an online terminal's heartbeat is overdue now."""
    state = row["state"]
    if state == "online" and overdue(row, now, heartbeat_s, silent_factor):
        return "silent"
    return state


def overdue(row, now, heartbeat_s=None, silent_factor=2.5):
    """True when more than `silent_factor` heartbeat intervals passed since the last sign of life."""
    interval = row["hb_interval_s"] or heartbeat_s
    refs = [x for x in (row["last_hb"], row["state_since"]) if x is not None]
    if not interval or not refs:
        return False
    ref = max(refs)
    return now - ref > silent_factor * interval
