"""Outbox incarnations: a terminal whose outbox state was wiped starts seq at 1 again under a new `inc`, and
every record of both incarnations is stored; conflicting content under one key is kept and counted; a database
of the old schema (records keyed by terminal and seq) is upgraded in place."""

import json
import sqlite3

import pytest

from tools.headend import Ingest, Store, cli, contract, synth

TID = "861234567890123"
T = "bdmeter/%s/" % TID
M = "000072007201"
OLD, NEW = "1a2b3c4d", "9f8e7d6c"

# the schema of contract version 1 databases, as the head-end created them before incarnations
OLD_SCHEMA = """
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


@pytest.fixture
def store(tmp_path, backend):
    s = backend.open(tmp_path / "fleet.db")
    yield s
    s.close()


def _feed(ing, inc, seqs, t0, fwd0, meter=M):
    out = []
    for k, seq in enumerate(seqs):
        out.append(ing.handle(T + "energy", synth.energy(seq, t0 + 60 * k, meter, fwd0 + k, inc=inc)))
    return out


def test_a_state_wipe_keeps_every_record_of_both_incarnations(store):
    ing = Ingest(store)
    assert ing.handle(T + "register", synth.register(1, 1000, [M], 40.80, 111.70, inc=OLD)) == "stored"
    assert _feed(ing, OLD, range(2, 12), 1060, 100.0) == ["stored"] * 10
    # the flash is erased: a new incarnation, seq from 1 again, overlapping the old seqs with other content
    assert ing.handle(T + "register", synth.register(1, 5000, [M], 40.85, 111.75, inc=NEW)) == "stored"
    assert _feed(ing, NEW, range(2, 8), 5060, 500.0) == ["stored"] * 6
    assert store.count("readings") == 16 and store.count("registrations") == 2
    # redeliveries of either incarnation are still duplicates
    assert ing.handle(T + "energy", synth.energy(5, 1060 + 3 * 60, M, 103.0, inc=OLD)) == "duplicate"
    assert ing.handle(T + "energy", synth.energy(5, 5060 + 3 * 60, M, 503.0, inc=NEW)) == "duplicate"
    c = store.counters()
    assert (c["stored"], c["duplicate"], c.get("conflict", 0)) == (18, 2, 0)
    # the fleet view follows the newer incarnation although its seqs are lower
    row = store.fleet(now=6000)[0]
    assert (row["lat"], row["lon"]) == (40.85, 111.75) and row["energy"][M]["fwd"] == 505.0
    assert row["inc"] == NEW
    # late replays of the old incarnation change neither view
    assert ing.handle(T + "register", synth.register(12, 1900, [M], 40.70, 111.60, inc=OLD)) == "stored"
    assert ing.handle(T + "energy", synth.energy(13, 1960, M, 111.0, inc=OLD)) == "stored"
    row = store.fleet(now=6000)[0]
    assert (row["lat"], row["lon"]) == (40.85, 111.75) and row["energy"][M]["fwd"] == 505.0


def test_gaps_are_reported_per_incarnation(store, capsys):
    ing = Ingest(store)
    _feed(ing, OLD, [1, 2, 3, 6, 7, 10], 1000, 100.0)
    _feed(ing, NEW, [1, 2, 3], 5000, 500.0)
    _feed(ing, None, [4, 5], 9000, 900.0)  # a version 1 record has incarnation ""
    got = {i["inc"]: i for i in store.incarnations(TID)}
    assert got[OLD]["missing"] == 4 and got[OLD]["gaps"] == [[4, 5], [8, 9]]
    assert got[NEW]["missing"] == 0 and got[NEW]["gaps"] == []
    assert got[""]["missing"] == 3 and got[""]["gaps"] == [[1, 3]]
    assert [i["inc"] for i in store.incarnations()] == [OLD, NEW, ""]  # in the order first seen
    assert cli.main(["status", "--db", store.path]) == 0
    out = capsys.readouterr().out
    assert "%s inc %s: 6 records, seq 1..10, 4 missing: 4-5 8-9" % (TID, OLD) in out
    assert "%s inc (none, v1): 2 records, seq 4..5, 3 missing: 1-3" % TID in out


def test_a_duplicate_with_other_content_is_kept_and_counted(store, capsys):
    ing = Ingest(store)
    assert ing.handle(T + "energy", synth.energy(7, 1000, M, 10.0, inc=OLD)) == "stored"
    assert ing.handle(T + "energy", synth.energy(7, 1000, M, 99.0, inc=OLD)) == "conflict"
    assert ing.handle(T + "event", synth.event(7, 1000, "reboot", {"cause": "power"}, inc=OLD)) == "conflict"
    assert ing.handle(T + "energy", synth.energy(7, 1000, M, 10.0, inc=OLD)) == "duplicate"
    assert store.count("readings") == 1 and store.count("events") == 0
    assert store.counters()["conflict"] == 2
    kept = store.conflicts()
    assert [(k["kind"], k["stored_kind"], k["seq"], k["inc"]) for k in kept] == [("energy", "energy", 7, OLD),
                                                                                 ("event", "energy", 7, OLD)]
    assert json.loads(kept[0]["message"])["kwh"]["fwd"] == 99.0
    assert cli.main(["status", "--db", store.path]) == 0
    out = capsys.readouterr().out
    assert "conflicts 2" in out and "table conflicts" in out


def test_contract_versions_and_inc():
    e = json.loads(synth.energy(1, 1000, M, 1.0, inc=OLD))
    assert e["v"] == 2 and e["inc"] == OLD
    assert contract.parse(T + "energy", json.dumps(e), "bdmeter")[2]["inc"] == OLD
    v1 = json.loads(synth.energy(1, 1000, M, 1.0))
    assert contract.record_inc(contract.parse(T + "energy", json.dumps(v1), "bdmeter")[2]) == ""
    bad = [dict(e, inc=k) for k in ("1A2B3C4D", "1a2b3c4", "1a2b3c4d0", 12345678, "")] + [dict(e, v=3)]
    missing = dict(e)
    del missing["inc"]
    for obj in bad + [missing]:
        with pytest.raises(contract.ContractError):
            contract.parse(T + "energy", json.dumps(obj), "bdmeter")
    # a version 2 heartbeat and status carry no inc
    contract.parse(T + "heartbeat", b'{"v":2,"ts":9,"tsrc":"net","up":9}', "bdmeter")
    contract.parse(T + "status", b'{"v":2,"state":"offline"}', "bdmeter")


def _old_database(path):
    db = sqlite3.connect(str(path))
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO terminals(tid, first_seen, last_seen, state, meters, reg_seq, lat, lon, last_seq)"
               " VALUES(?, 1, 2, 'online', ?, 1, 40.8, 111.7, 3)", (TID, json.dumps([M])))
    rows = [(1, "register"), (2, "energy"), (3, "event")]
    db.executemany("INSERT INTO records(tid, seq, kind, received) VALUES(?,?,?,1.5)", [(TID, s, k) for s, k in rows])
    db.execute("INSERT INTO registrations VALUES(?,1,1000,'gnss','connect',?,40.8,111.7,1050.0,0.9,9,24,"
               "'861234567890123','89860012345678901234','0.1.0',23,1.5)", (TID, json.dumps([M])))
    db.execute("INSERT INTO registration_meters VALUES(?,?,1)", (M, TID))
    db.execute("INSERT INTO readings VALUES(?,2,?,1060,'gnss',10.0,2.5,2.5,2.5,2.5,0.0,10.0,?,1.5)",
               (TID, M, json.dumps({"v": [230.1, 229.8, 230.4], "i": [1.2, 0.9, 1.0], "p": 0.71, "pf": 0.98,
                                    "f": 50.0}, separators=(",", ":"))))
    db.execute("INSERT INTO events VALUES(?,3,1100,'gnss','reboot','{\"cause\":\"power\"}',1.5)", (TID,))
    db.execute("INSERT INTO counters VALUES('stored', 3)")
    db.commit()
    db.close()


def test_an_old_database_is_upgraded_in_place(tmp_path, capsys):
    path = tmp_path / "old.db"
    _old_database(path)
    store = Store(path)
    assert store.migrated
    ing = Ingest(store)
    # what was stored is incarnation "": the same version 1 records are redeliveries ...
    assert ing.handle(T + "register", synth.register(1, 1000, [M], 40.8, 111.7)) == "duplicate"
    assert ing.handle(T + "energy", synth.energy(2, 1060, M, 10.0)) == "duplicate"
    assert ing.handle(T + "event", synth.event(3, 1100, "reboot", {"cause": "power"})) == "duplicate"
    # ... other content under an old key is a conflict, and a new incarnation starts afresh
    assert ing.handle(T + "energy", synth.energy(2, 1060, M, 77.0)) == "conflict"
    assert ing.handle(T + "energy", synth.energy(1, 2000, M, 20.0, inc=NEW)) == "stored"
    assert ing.handle(T + "energy", synth.energy(2, 2060, M, 21.0, inc=NEW)) == "stored"
    assert store.count("readings") == 3 and store.count("records") == 5
    assert [(i["inc"], i["records"]) for i in store.incarnations(TID)] == [("", 3), (NEW, 2)]
    row = store.fleet(now=3000)[0]
    assert row["energy"][M]["fwd"] == 21.0 and (row["lat"], row["lon"]) == (40.8, 111.7)
    # a registration of the new incarnation replaces the view although its seq is lower
    ing.handle(T + "register", synth.register(3, 2100, [M], 40.9, 111.8, inc=NEW))
    assert (store.fleet(now=3000)[0]["lat"]) == 40.9
    store.close()
    again = Store(path)  # opening an upgraded database changes nothing
    assert not again.migrated and again.count("records") == 6
    assert again.query("PRAGMA user_version")[0][0] == 4  # 3: the meters' frozen values and events; 4: settlements
    assert again.query("SELECT count(*) FROM frozen")[0][0] == 0
    names = {r["name"] for r in again.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"readings_meter_ts", "readings_tid_meter"} <= names
    again.close()
    assert cli.main(["status", "--db", str(path)]) == 0
    assert "conflicts 1" in capsys.readouterr().out
