"""The head-end's SQLite schema (version 4: records keyed by terminal, outbox incarnation and seq; the meters'
frozen values and events (3), their settlements (4)) and the migration of a version 1 database (records keyed
by terminal and seq) to it. Versions 2 to 3 and 3 to 4 only add tables."""

import logging

from tools.headend import meter_records, rows

log = logging.getLogger("bdmeter.headend")

VERSION = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS terminals(
    tid TEXT PRIMARY KEY, first_seen REAL, last_seen REAL,
    state TEXT NOT NULL DEFAULT 'unknown', state_since REAL,
    status_state TEXT, status_at REAL, fw TEXT, imei TEXT, iccid TEXT,
    meters TEXT, reg_seq INTEGER, lat REAL, lon REAL, alt REAL, csq INTEGER,
    last_hb REAL, hb_gaps TEXT, hb_interval_s REAL, last_seq INTEGER, inc TEXT, reg_inc TEXT);
CREATE TABLE IF NOT EXISTS records(
    tid TEXT NOT NULL, inc TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL, kind TEXT, received REAL, digest TEXT,
    PRIMARY KEY(tid, inc, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS incarnations(
    tid TEXT NOT NULL, inc TEXT NOT NULL, first_seen REAL NOT NULL, PRIMARY KEY(tid, inc)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conflicts(
    id INTEGER PRIMARY KEY, tid TEXT NOT NULL, inc TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT,
    received REAL, stored_kind TEXT, message TEXT);
CREATE TABLE IF NOT EXISTS registrations(
    tid TEXT NOT NULL, inc TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL, ts INTEGER, tsrc TEXT, why TEXT,
    meters TEXT, lat REAL, lon REAL, alt REAL, hdop REAL, nsat INTEGER, n INTEGER,
    imei TEXT, iccid TEXT, fw TEXT, csq INTEGER, received REAL, PRIMARY KEY(tid, inc, seq));
CREATE TABLE IF NOT EXISTS registration_meters(
    meter TEXT NOT NULL, tid TEXT NOT NULL, inc TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL,
    PRIMARY KEY(meter, tid, inc, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings(
    tid TEXT NOT NULL, inc TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL, meter TEXT NOT NULL, ts INTEGER,
    tsrc TEXT, fwd REAL, t1 REAL, t2 REAL, t3 REAL, t4 REAL, rev REAL, comb REAL, inst TEXT, received REAL,
    PRIMARY KEY(tid, inc, seq));
CREATE INDEX IF NOT EXISTS readings_meter_ts ON readings(meter, ts);
CREATE INDEX IF NOT EXISTS readings_tid_meter ON readings(tid, inc, meter, seq);
CREATE TABLE IF NOT EXISTS heartbeats(
    id INTEGER PRIMARY KEY, tid TEXT NOT NULL, received REAL, ts INTEGER, tsrc TEXT, up INTEGER,
    csq INTEGER, fix INTEGER, nsat INTEGER, outbox INTEGER, heap INTEGER, heap_peak INTEGER, reset TEXT,
    err TEXT);
CREATE INDEX IF NOT EXISTS heartbeats_tid ON heartbeats(tid, received);
CREATE TABLE IF NOT EXISTS events(
    tid TEXT NOT NULL, inc TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL, ts INTEGER, tsrc TEXT, kind TEXT,
    data TEXT, received REAL, PRIMARY KEY(tid, inc, seq));
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

# tables whose primary key gained `inc` in version 2, with their version 1 columns after (tid, seq)
_REKEYED = {
    "records": ("kind", "received"),
    "registrations": rows.COLUMNS["register"] + ("received",),
    "registration_meters": ("meter",),
    "readings": rows.COLUMNS["energy"] + ("received",),
    "events": rows.COLUMNS["event"] + ("received",),
}
_OLD_INDEXES = ("readings_meter_ts", "readings_tid_meter")


def _columns(db, table):
    return [r[1] for r in db.execute("PRAGMA table_info(%s)" % table).fetchall()]


def statements():
    return [s.strip() for s in SCHEMA.split(";") if s.strip()] + meter_records.statements()


def ensure(db):
    """Create or upgrade the schema; call inside a write transaction. Return True if a migration ran."""
    migrated = False
    cols = _columns(db, "records")
    if cols and "inc" not in cols:
        _v1_to_v2(db)
        migrated = True
    have = _columns(db, "terminals")
    for s in statements():
        db.execute(s)
    for col in ("inc", "reg_inc"):
        if have and col not in have:
            db.execute("ALTER TABLE terminals ADD COLUMN %s TEXT" % col)
    if migrated:
        # everything stored before was incarnation "" (records of contract version 1 carry no inc)
        db.execute("UPDATE terminals SET inc = '' WHERE tid IN (SELECT tid FROM incarnations)")
        db.execute("UPDATE terminals SET reg_inc = '' WHERE reg_seq IS NOT NULL")
    db.execute("PRAGMA user_version = %d" % VERSION)
    return migrated


def _v1_to_v2(db):
    """Re-key the record tables on (tid, inc, seq) with inc "", and fingerprint every stored record."""
    for table in _REKEYED:
        db.execute("ALTER TABLE %s RENAME TO %s_v1" % (table, table))
    for index in _OLD_INDEXES:
        db.execute("DROP INDEX IF EXISTS %s" % index)
    for s in statements():
        db.execute(s)
    for table, cols in _REKEYED.items():
        names = ", ".join(cols)
        db.execute("INSERT INTO %s(tid, inc, seq, %s) SELECT tid, '', seq, %s FROM %s_v1" % (table, names, names,
                                                                                              table))
    for kind, table in rows.TABLE.items():
        cols = rows.COLUMNS[kind]
        for r in db.execute("SELECT tid, seq, %s FROM %s" % (", ".join(cols), table)).fetchall():
            db.execute("UPDATE records SET digest = ? WHERE tid = ? AND inc = '' AND seq = ?",
                       (rows.fingerprint(kind, tuple(r)[2:]), r[0], r[1]))
    db.execute("INSERT OR IGNORE INTO incarnations(tid, inc, first_seen)"
               " SELECT tid, '', coalesce(min(received), 0) FROM records GROUP BY tid")
    for table in _REKEYED:
        db.execute("DROP TABLE %s_v1" % table)
    n = db.execute("SELECT count(*) FROM records").fetchone()[0]
    log.info("database upgraded to schema %d: %d records keyed by (terminal, incarnation, seq)", VERSION, n)
