"""Head-end: frozen values and settlements kept once per (meter, date), meter events per (meter, kind, n) with
open ones completed, completeness per day, whole-day energy from freezes adding up exactly, settlements listed
with the energy between them, the days/completeness/events/settlements commands; the documented examples
validate; older databases gain the tables."""

import json

import pytest

from tools.headend import Ingest, Store, cli, contract, meter_records

TID = "861234567890123"
T = "bdmeter/%s/" % TID
A, B = "000072007201", "000072007202"

# docs/PROTOCOL.md examples, verbatim
FROZEN = ('{"v":2,"inc":"5f3a9c01","seq":57,"ts":1795471500,"tsrc":"gnss","meter":"000072007201","date":"2026-11-27",'
          '"at":"2026-11-27T00:00","fwd":[1234.56,300.12,400.20,334.24,200.00],"rev":[1.50]}')
EVENTS = ('{"v":2,"inc":"5f3a9c01","seq":61,"ts":1795474800,"tsrc":"gnss","meter":"000072007201",'
          '"kind":"power_down","n":12,'
          '"start":"2026-11-27T13:05:09","end":"2026-11-27T14:00:00"}',
          '{"v":2,"inc":"5f3a9c01","seq":62,"ts":1795478400,"tsrc":"gnss","meter":"000072007201",'
          '"kind":"meter_cover","n":3,'
          '"start":"2026-11-27T15:30:00","end":"2026-11-27T15:31:10","kwh_before":[1240.10,1.50],'
          '"kwh_after":[1240.12,1.50]}')
SETTLE = ('{"v":2,"inc":"5f3a9c01","seq":58,"ts":1795471800,"tsrc":"gnss","meter":"000072007201",'
          '"date":"2026-11-01","at":"2026-11-01T00:00","fwd":[1180.40,290.02,385.11,320.07,185.20],"rev":[1.48]}')


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "fleet.db")
    yield s
    s.close()


def frozen(seq, meter, day, fwd, inc="0000abcd"):
    return json.dumps({"v": 2, "inc": inc, "seq": seq, "ts": 1795471500 + seq, "tsrc": "gnss", "meter": meter,
                       "date": day, "at": day + "T00:00", "fwd": [fwd], "rev": [0.0]}).encode()


def register(ing, seq, meters):
    ing.handle(T + "register", json.dumps({
        "v": 2, "inc": "0000abcd", "seq": seq, "ts": 1795430400, "tsrc": "gnss", "why": "connect", "meters": meters,
        "pos": {"lat": 40.84, "lon": 111.75}, "imei": TID, "fw": "0.1.0", "csq": 20}).encode())


def test_documented_examples_validate(store):
    contract.parse(T + "frozen", FROZEN.encode(), "bdmeter")
    for e in EVENTS:
        contract.parse(T + "meter_event", e.encode(), "bdmeter")
    ing = Ingest(store)
    assert ing.handle(T + "frozen", FROZEN.encode()) == "stored"
    row = store.query("SELECT * FROM frozen")[0]
    assert row["fwd_c"] == 123456 and json.loads(row["fwd"]) == [123456, 30012, 40020, 33424, 20000]


@pytest.mark.parametrize("bad", [
    {"date": "27.11.2026"}, {"fwd": []}, {"fwd": ["1.0"]}, {"at": 5}, {"meter": "72007201"}, {"rev": [-1.0]}])
def test_frozen_contract_rejects(bad):
    obj = json.loads(FROZEN)
    obj.update(bad)
    with pytest.raises(contract.ContractError):
        contract.parse(T + "frozen", json.dumps(obj).encode(), "bdmeter")


def test_frozen_once_per_meter_and_date_and_conflicts_counted(store, caplog):
    ing = Ingest(store)
    assert ing.handle(T + "frozen", frozen(1, A, "2026-11-27", 100.0)) == "stored"
    assert ing.handle(T + "frozen", frozen(1, A, "2026-11-27", 100.0)) == "duplicate"  # MQTT redelivery
    assert ing.handle(T + "frozen", frozen(2, A, "2026-11-27", 100.0)) == "stored"  # sent again after a cut
    assert ing.handle(T + "frozen", frozen(3, A, "2026-11-27", 101.0)) == "stored"  # other content: counted
    assert store.query("SELECT count(*) FROM frozen")[0][0] == 1
    assert store.query("SELECT fwd_c FROM frozen")[0][0] == 10000
    c = store.counters()
    assert c["frozen_again"] == 1 and c["frozen_conflict"] == 1
    assert "differs" in caplog.text


def test_meter_event_open_then_closed(store):
    ing = Ingest(store)
    base = {"v": 2, "inc": "0000abcd", "ts": 1795474800, "tsrc": "gnss", "meter": A, "kind": "meter_cover", "n": 3,
            "start": "2026-11-27T15:30:00", "end": None}
    ing.handle(T + "meter_event", json.dumps(dict(base, seq=1)).encode())
    ing.handle(T + "meter_event", json.dumps(dict(base, seq=2, end="2026-11-27T15:31:10")).encode())
    ing.handle(T + "meter_event", json.dumps(dict(base, seq=3)).encode())  # an old copy changes nothing
    ev = meter_records.events(store)
    assert len(ev) == 1 and ev[0]["end"] == "2026-11-27T15:31:10" and ev[0]["tid"] == TID


def test_completeness_and_whole_days_add_up(store):
    ing = Ingest(store)
    register(ing, 1, [A, B])
    seq = 1
    kwh = {A: 1000.00, B: 50.00}
    for day in range(1, 8):
        for m in (A, B):
            if m == B and day == 4:
                continue  # never arrived
            seq += 1
            ing.handle(T + "frozen", frozen(seq, m, "2026-11-%02d" % day, round(kwh[m], 2)))
            kwh[m] += 12.34 if m == A else 0.07
    comp = meter_records.completeness(store, "2026-11-01", "2026-11-07")
    assert [r["pct"] for r in comp] == [100.0, 100.0, 100.0, 50.0, 100.0, 100.0, 100.0]
    assert comp[3]["missing"] == [B]
    rep = meter_records.day_energy(store, "2026-11-01", "2026-11-06", [A])
    assert sum(d["kwh"] for d in rep["days"]) == rep["period_kwh"] == rep["period"][A]
    assert str(rep["days"][0]["kwh"]) == "12.34" and str(rep["period_kwh"]) == "74.04"
    rep = meter_records.day_energy(store, "2026-11-01", "2026-11-06", [B])
    assert rep["days"][2]["meters"][B] is None and rep["period"][B] is not None


def test_commands(store, tmp_path, capsys):
    ing = Ingest(store)
    register(ing, 1, [A])
    for i, day in enumerate(("2026-11-01", "2026-11-02", "2026-11-03")):
        ing.handle(T + "frozen", frozen(2 + i, A, day, 10.0 + i))
    for e in EVENTS:
        ing.handle(T + "meter_event", e.encode())
    db = str(tmp_path / "fleet.db")
    assert cli.main(["days", "--db", db, "--from", "2026-11-01", "--to", "2026-11-02"]) == 0
    out = capsys.readouterr().out
    assert "2026-11-01          1.00 kWh" in out and "2.00 kWh" in out
    assert cli.main(["completeness", "--db", db, "--from", "2026-11-01", "--to", "2026-11-04", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["pct"] for r in rows] == [100.0, 100.0, 100.0, 0.0]
    assert cli.main(["events", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "power_down" in out and "meter_cover" in out and "2 event(s)" in out
    assert cli.main(["events", "--db", db, "--kind", "power_down", "--json"]) == 0
    assert [e["n"] for e in json.loads(capsys.readouterr().out)] == [12]
    assert cli.main(["days", "--db", db, "--from", "2026-11-03", "--to", "2026-11-01"]) == 2
    assert cli.main(["days", "--db", db, "--from", "yesterday", "--to", "2026-11-01"]) == 2


def test_a_version_2_database_gains_the_tables(tmp_path):
    import sqlite3

    path = tmp_path / "v2.db"
    s = Store(path)
    s.close()
    db = sqlite3.connect(str(path))
    db.execute("DROP TABLE frozen")
    db.execute("DROP TABLE meter_events")
    db.execute("DROP TABLE settlements")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    s = Store(path)
    try:
        assert s.migrated is False and s.query("PRAGMA user_version")[0][0] == 4
        assert Ingest(s).handle(T + "frozen", FROZEN.encode()) == "stored"
    finally:
        s.close()


def test_a_version_3_database_gains_the_settlements(tmp_path):
    import sqlite3

    path = tmp_path / "v3.db"
    s = Store(path)
    s.close()
    db = sqlite3.connect(str(path))
    db.execute("DROP TABLE settlements")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    s = Store(path)
    try:
        assert s.query("PRAGMA user_version")[0][0] == 4
        assert Ingest(s).handle(T + "settle", SETTLE.encode()) == "stored"
    finally:
        s.close()


def settle(seq, meter, day, fwd, inc="0000abcd"):
    return json.dumps({"v": 2, "inc": inc, "seq": seq, "ts": 1795471800 + seq, "tsrc": "gnss", "meter": meter,
                       "date": day, "at": day + "T00:00", "fwd": [fwd, fwd - 1.0, 1.0], "rev": [0.5]}).encode()


def test_settlements_kept_once_and_listed_with_the_energy_between_them(store, tmp_path, capsys):
    contract.parse(T + "settle", SETTLE.encode(), "bdmeter")
    ing = Ingest(store)
    assert ing.handle(T + "settle", SETTLE.encode()) == "stored"
    for seq, day, fwd in ((70, "2026-09-01", 1000.00), (71, "2026-10-01", 1090.25)):
        assert ing.handle(T + "settle", settle(seq, A, day, fwd)) == "stored"
    assert ing.handle(T + "settle", settle(72, A, "2026-10-01", 1090.25)) == "stored"  # sent again after a cut
    assert ing.handle(T + "settle", settle(73, A, "2026-10-01", 1091.00)) == "stored"  # other content: counted
    assert ing.handle(T + "settle", settle(74, B, "2026-11-01", 5.0)) == "stored"
    c = store.counters()
    assert c["settle_again"] == 1 and c["settle_conflict"] == 1
    rows = meter_records.settlements(store, meter=A)
    assert [r["date"] for r in rows] == ["2026-09-01", "2026-10-01", "2026-11-01"]
    assert rows[0]["kwh"] is None and str(rows[1]["kwh"]) == "90.25" and str(rows[2]["kwh"]) == "90.15"
    assert str(rows[2]["fwd"][1]) == "290.02" and str(rows[2]["rev"][0]) == "1.48"
    db = str(tmp_path / "fleet.db")
    assert cli.main(["settlements", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "2026-11-01T00:00" in out and "90.15 kWh" in out and "4 settlement(s)" in out
    assert cli.main(["settlements", "--db", db, "--meter", A, "--from", "2026-10-01", "--json"]) == 0
    assert [r["date"] for r in json.loads(capsys.readouterr().out)] == ["2026-10-01", "2026-11-01"]
    assert cli.main(["settlements", "--db", db, "--from", "2026-11-01", "--to", "2026-10-01"]) == 2
