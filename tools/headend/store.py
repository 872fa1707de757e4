"""The head-end's SQLite database (WAL): terminals, records de-duplicated by (tid, seq), health, counters."""

import json
import sqlite3
import threading
import time
from contextlib import contextmanager

SCHEMA = """
CREATE TABLE IF NOT EXISTS terminals(
    tid TEXT PRIMARY KEY, first_seen REAL, last_seen REAL,
    state TEXT NOT NULL DEFAULT 'unknown', state_since REAL,
    status_state TEXT, status_at REAL, fw TEXT, imei TEXT, iccid TEXT,
    meters TEXT, reg_seq INTEGER, lat REAL, lon REAL, alt REAL, csq INTEGER,
    last_hb REAL, hb_gaps TEXT, hb_interval_s REAL, last_seq INTEGER);
CREATE TABLE IF NOT EXISTS records(
    tid TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT, received REAL,
    PRIMARY KEY(tid, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS registrations(
    tid TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER, tsrc TEXT, why TEXT, meters TEXT,
    lat REAL, lon REAL, alt REAL, hdop REAL, nsat INTEGER, n INTEGER,
    imei TEXT, iccid TEXT, fw TEXT, csq INTEGER, received REAL, PRIMARY KEY(tid, seq));
CREATE TABLE IF NOT EXISTS registration_meters(
    meter TEXT NOT NULL, tid TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY(meter, tid, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings(
    tid TEXT NOT NULL, seq INTEGER NOT NULL, meter TEXT NOT NULL, ts INTEGER, tsrc TEXT,
    fwd REAL, t1 REAL, t2 REAL, t3 REAL, t4 REAL, rev REAL, comb REAL, inst TEXT, received REAL,
    PRIMARY KEY(tid, seq));
CREATE INDEX IF NOT EXISTS readings_meter_ts ON readings(meter, ts);
CREATE INDEX IF NOT EXISTS readings_tid_meter ON readings(tid, meter, seq);
CREATE TABLE IF NOT EXISTS heartbeats(
    id INTEGER PRIMARY KEY, tid TEXT NOT NULL, received REAL, ts INTEGER, tsrc TEXT, up INTEGER,
    csq INTEGER, fix INTEGER, nsat INTEGER, outbox INTEGER, heap INTEGER, heap_peak INTEGER, reset TEXT,
    err TEXT);
CREATE INDEX IF NOT EXISTS heartbeats_tid ON heartbeats(tid, received);
CREATE TABLE IF NOT EXISTS events(
    tid TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER, tsrc TEXT, kind TEXT, data TEXT, received REAL,
    PRIMARY KEY(tid, seq));
CREATE TABLE IF NOT EXISTS responses(
    tid TEXT NOT NULL, id TEXT, ok INTEGER, ts INTEGER, tsrc TEXT, result TEXT, error TEXT, received REAL,
    UNIQUE(tid, id));
CREATE TABLE IF NOT EXISTS transitions(
    id INTEGER PRIMARY KEY, tid TEXT NOT NULL, at REAL, state TEXT, why TEXT);
CREATE TABLE IF NOT EXISTS rejects(
    id INTEGER PRIMARY KEY, at REAL, topic TEXT, reason TEXT, payload BLOB);
CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS keys(tid TEXT PRIMARY KEY, key_hex TEXT NOT NULL);
"""

KWH_COLUMNS = ("fwd", "t1", "t2", "t3", "t4", "rev", "comb")
REJECT_PAYLOAD_MAX = 512


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


class Store:
    """One SQLite connection, shared by threads under a lock; every write runs in `tx()`."""

    def __init__(self, path, timeout_s=10.0):
        self.path = str(path)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        with self.lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a process crash; only an OS crash can lose the last ones
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)

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
        return self.db.execute("INSERT INTO counters(name, value) VALUES(?, ?) "
                               "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value RETURNING value",
                               (name, n)).fetchone()[0]

    def reject(self, topic, reason, payload, now):
        self.db.execute("INSERT INTO rejects(at, topic, reason, payload) VALUES(?,?,?,?)",
                        (now, topic[:200], reason, bytes(payload[:REJECT_PAYLOAD_MAX])))
        self.bump("invalid")

    def touch(self, tid, now):
        self.db.execute("INSERT INTO terminals(tid, first_seen, last_seen) VALUES(?,?,?) "
                        "ON CONFLICT(tid) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
                        (tid, now, now))

    def terminal(self, tid):
        return self.db.execute("SELECT * FROM terminals WHERE tid = ?", (tid,)).fetchone()

    def claim_record(self, tid, seq, kind, now):
        """True the first time (tid, seq) is seen; False for a redelivery."""
        cur = self.db.execute("INSERT OR IGNORE INTO records(tid, seq, kind, received) VALUES(?,?,?,?)",
                              (tid, seq, kind, now))
        if cur.rowcount == 0:
            return False
        self.db.execute("UPDATE terminals SET last_seq = max(coalesce(last_seq, 0), ?) WHERE tid = ?", (seq, tid))
        return True

    def add_registration(self, tid, m, now):
        pos = m.get("pos") or {}
        self.db.execute(
            "INSERT INTO registrations VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (tid, m["seq"], int(m["ts"]), m["tsrc"], m["why"], _dumps(m["meters"]), pos.get("lat"), pos.get("lon"),
             pos.get("alt"), pos.get("hdop"), pos.get("nsat"), pos.get("n"), m.get("imei"), m.get("iccid"),
             m.get("fw"), m.get("csq"), now))
        self.db.executemany("INSERT OR IGNORE INTO registration_meters(meter, tid, seq) VALUES(?,?,?)",
                            [(a, tid, m["seq"]) for a in m["meters"]])
        # the terminal's current view is its newest registration; an older one replayed late changes nothing
        self.db.execute(
            "UPDATE terminals SET reg_seq = ?, meters = ?, imei = ?, iccid = ?, fw = coalesce(?, fw), csq = ?,"
            " lat = coalesce(?, lat), lon = coalesce(?, lon), alt = coalesce(?, alt)"
            " WHERE tid = ? AND coalesce(reg_seq, 0) < ?",
            (m["seq"], _dumps(m["meters"]), m.get("imei"), m.get("iccid"), m.get("fw"), m.get("csq"),
             pos.get("lat"), pos.get("lon"), pos.get("alt"), tid, m["seq"]))

    def add_reading(self, tid, m, now):
        kwh = m["kwh"]
        self.db.execute(
            "INSERT INTO readings VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (tid, m["seq"], m["meter"], int(m["ts"]), m["tsrc"]) + tuple(kwh.get(k) for k in KWH_COLUMNS)
            + (_dumps(m["inst"]) if "inst" in m else None, now))

    def add_event(self, tid, m, now):
        self.db.execute("INSERT INTO events VALUES(?,?,?,?,?,?,?)",
                        (tid, m["seq"], int(m["ts"]), m["tsrc"], m["kind"], _dumps(m["data"]), now))

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
            "INSERT OR REPLACE INTO responses VALUES(?,?,?,?,?,?,?,?)",
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
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO keys(tid, key_hex) VALUES(?, ?)", (tid, key_hex.lower()))

    def key(self, tid):
        rows = self.query("SELECT key_hex FROM keys WHERE tid = ?", (tid,))
        return rows[0]["key_hex"] if rows else None

    # -- reads -----------------------------------------------------------------------------------------

    def counters(self):
        return {r["name"]: r["value"] for r in self.query("SELECT name, value FROM counters")}

    def count(self, table):
        if table not in ("records", "registrations", "readings", "heartbeats", "events", "responses",
                         "transitions", "rejects", "terminals"):
            raise ValueError(table)
        return self.query("SELECT count(*) AS n FROM %s" % table)[0]["n"]

    def response(self, tid, req_id):
        rows = self.query("SELECT * FROM responses WHERE tid = ? AND id = ?", (tid, req_id))
        return dict(rows[0]) if rows else None

    def transitions(self, tid):
        return [(r["state"], r["why"]) for r in
                self.query("SELECT state, why FROM transitions WHERE tid = ? ORDER BY id", (tid,))]

    def fleet(self, now=None, heartbeat_s=None, silent_factor=2.5):
        """One dict per terminal: id, meters, position, last energy per meter, last seen, state."""
        now = time.time() if now is None else now
        out = []
        with self.lock:
            for t in self.db.execute("SELECT * FROM terminals ORDER BY tid").fetchall():
                meters = json.loads(t["meters"]) if t["meters"] else []
                energy = {}
                for r in self.db.execute(
                        "SELECT r.meter, r.fwd, r.ts, r.tsrc FROM readings r"
                        " JOIN (SELECT meter, max(seq) AS seq FROM readings WHERE tid = ? GROUP BY meter) last"
                        " ON r.meter = last.meter AND r.seq = last.seq WHERE r.tid = ?", (t["tid"], t["tid"])):
                    energy[r["meter"]] = {"fwd": r["fwd"], "ts": r["ts"], "tsrc": r["tsrc"]}
                for a in energy:
                    if a not in meters:
                        meters.append(a)
                out.append({
                    "tid": t["tid"], "meters": meters, "lat": t["lat"], "lon": t["lon"], "alt": t["alt"],
                    "energy": energy, "last_seen": t["last_seen"], "last_hb": t["last_hb"],
                    "hb_interval_s": t["hb_interval_s"], "csq": t["csq"], "fw": t["fw"],
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
