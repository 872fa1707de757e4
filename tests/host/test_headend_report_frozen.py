"""The regional report over whole meter-local days takes the meters' frozen values: the days of a month add up
exactly to the month; a meter missing a boundary freeze (or whose frozen register went down) falls back to its
live readings and its row says so; a period that is not whole days uses live readings; a meter_anomaly the
terminal kept out of the readings stays out of the report."""

import csv
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from tools.headend import Ingest, cli, report, synth
from tools.headend.pgstore import open_store

TID = "861234567890123"
T = "bdmeter/%s/" % TID
A, B, C, D = "000072007201", "000072007202", "000072007203", "000072007204"
TZ = report.METER_TZ
NOV1 = int(datetime(2026, 11, 1, tzinfo=TZ).timestamp())
DEC1 = int(datetime(2026, 12, 1, tzinfo=TZ).timestamp())


def _day(k):
    return (datetime(2026, 11, 1) + timedelta(days=k)).date().isoformat()


def _frozen(seq, meter, date, fwd):
    return synth.dumps({"v": 2, "inc": "0000abcd", "seq": seq, "ts": 1795471500, "tsrc": "gnss", "meter": meter,
                        "date": date, "at": date + "T00:00", "fwd": [round(fwd, 2)], "rev": [0.0]})


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "fleet.db")
    store = open_store(path)
    ing = Ingest(store)
    seq = 1
    ing.handle(T + "register", synth.register(seq, NOV1 - 3600, [A, B, C, D], 40.84, 111.75, imei=TID,
                                              inc="0000abcd"))
    fwd = {A: 1000.00, B: 50.00, C: 700.00, D: 300.00}
    rate = {A: Decimal("12.34"), B: Decimal("0.07"), C: Decimal("5.55"), D: Decimal("3.21")}
    for k in range(31):  # freezes 2026-11-01 .. 2026-12-01, and live readings 7 minutes after each midnight
        date = _day(k)
        for m in (A, B, C, D):
            if m == B and date == "2026-12-01":
                continue  # never arrived
            seq += 1
            f = 5.0 if (m == D and date == "2026-12-01") else fwd[m]  # D swapped: register went down
            assert ing.handle(T + "frozen", _frozen(seq, m, date, f)) == "stored"
            seq += 1
            # the live reading is off the freeze by the consumption of 7 minutes, so the sources differ
            assert ing.handle(T + "energy", synth.energy(seq, NOV1 + k * 86400 + 420, m, f + 0.11,
                                                         inc="0000abcd")) == "stored"
            fwd[m] = float(Decimal(repr(fwd[m])) + rate[m])
    # the terminal kept an implausible reading of C out of its readings and said so with a meter_anomaly event
    seq += 1
    ing.handle(T + "event", synth.event(seq, NOV1 + 10 * 86400, "meter_anomaly",
                                        {"meter": C, "reg": "fwd", "why": "too_fast", "prev": 755.5, "now": 99999.0,
                                         "dt_s": 900, "max_kw": 60}, inc="0000abcd"))
    store.close()
    return path


def _rows(rep):
    return {m["meter"]: m for m in rep["meters"]}


def test_days_from_frozen_values_add_up_exactly_to_the_month(db):
    store = open_store(db)
    try:
        month = report.compute(store, NOV1, DEC1, grid_deg=0.02)
        days = [report.compute(store, NOV1 + k * 86400, NOV1 + (k + 1) * 86400, grid_deg=0.02) for k in range(30)]
    finally:
        store.close()
    rows = _rows(month)
    assert month["days"] == ("2026-11-01", "2026-12-01")
    assert rows[A]["source"] == "frozen" and rows[A]["kwh"] == Decimal("370.20")  # 30 x 12.34, exactly
    assert rows[C]["source"] == "frozen" and rows[C]["kwh"] == Decimal("166.50")  # the anomaly stays out
    assert rows[A]["fwd_from"] == Decimal("1000.00") and rows[A]["how_from"] == "frozen"
    for m in (A, C):
        assert sum(_rows(d)[m]["kwh"] for d in days) == rows[m]["kwh"]
        assert all(_rows(d)[m]["source"] == "frozen" for d in days)
    # B has every day's freezes but the month's last: its days are frozen, the month falls back to live
    assert all(_rows(d)[B]["source"] == "frozen" for d in days[:-1]) and _rows(days[-1])[B]["source"] == "live"
    assert rows[B]["source"] == "live" and rows[B]["note"] == "no freeze dated 2026-12-01"
    assert rows[D]["source"] == "live" and "went down" in rows[D]["note"]
    assert month["total_kwh"] == sum(m["kwh"] for m in month["meters"])


def test_a_period_not_whole_meter_days_uses_live_readings(db):
    store = open_store(db)
    try:
        utc = report.compute(store, NOV1 + 8 * 3600, DEC1 + 8 * 3600, grid_deg=0.02)  # UTC midnights
        hours = report.compute(store, NOV1, NOV1 + 6 * 3600, grid_deg=0.02)
    finally:
        store.close()
    for rep in (utc, hours):
        assert rep["days"] is None
        assert {m["source"] for m in rep["meters"]} == {"live"}
        assert {m["note"] for m in rep["meters"]} == {report.NOT_WHOLE_DAYS}


def test_cli_marks_each_row_with_its_source(db, tmp_path, capsys):
    out = tmp_path / "month"
    assert cli.main(["report", "--db", db, "--from", "2026-11-01T00:00+08:00", "--to", "2026-12-01T00:00+08:00",
                     "--grid", "0.02", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 meter(s) from frozen values, 2 from live readings" in printed
    with open(str(out) + "-meters.csv") as f:
        rows = {r["meter"]: r for r in csv.DictReader(f)}
    assert rows[A]["source"] == "frozen" and rows[A]["energy_kwh"] == "370.20" and rows[A]["from_is"] == "frozen"
    assert rows[B]["source"] == "live" and rows[B]["source_note"] == "no freeze dated 2026-12-01"
    # another zone for the meters: these midnights are not theirs
    assert cli.main(["report", "--db", db, "--from", "2026-11-01T00:00+08:00", "--to", "2026-12-01T00:00+08:00",
                     "--grid", "0.02", "--out", str(out), "--tz", "UTC"]) == 0
    assert "0 meter(s) from frozen values, 4 from live readings (the period is not whole days" in \
        capsys.readouterr().out


def test_line_loss_over_the_meters_days_takes_the_freezes(db):
    from tools.headend import assets, lineloss

    store = open_store(db)
    try:
        assets.import_csv(store, "meter,area,role,customer\n%s,TA,supply,\n%s,TA,customer,c1\n" % (A, C))
        rows = lineloss.compute(store, NOV1, NOV1 + 2 * 86400, TZ, "day")
        whole = lineloss.compute(store, NOV1, DEC1, TZ, "whole")[0]
    finally:
        store.close()
    assert [(r["supply_kwh"], r["customers_kwh"]) for r in rows] == [(Decimal("12.34"), Decimal("5.55"))] * 2
    assert whole["supply_kwh"] == Decimal("370.20") and whole["loss_kwh"] == Decimal("370.20") - Decimal("166.50")


def test_the_dashboards_daily_chart_takes_the_freezes_too(db):
    from tools.headend import webdata

    store = open_store(db)
    try:
        days = dict(webdata.daily(store, [A], TZ, now=DEC1 + 3600, days=40))
        b = dict(webdata.daily(store, [B], TZ, now=DEC1 + 3600, days=40))
    finally:
        store.close()
    assert days["2026-11-05"] == 12.34 and sum(days[_day(k)] for k in range(30)) == pytest.approx(370.20)
    # B's last day has no closing freeze: its live readings stop 7 minutes into it
    assert b["2026-11-29"] == 0.07 and b["2026-11-30"] < 0.01


def test_a_meter_with_one_freeze_and_no_readings_is_skipped_saying_both(tmp_path):
    store = open_store(str(tmp_path / "one.db"))
    try:
        ing = Ingest(store)
        ing.handle(T + "register", synth.register(1, NOV1, [A], 40.84, 111.75, imei=TID, inc="0000abcd"))
        ing.handle(T + "frozen", _frozen(2, A, "2026-11-01", 100.0))
        rep = report.compute(store, NOV1, DEC1, grid_deg=0.02)
    finally:
        store.close()
    assert rep["meters"] == []
    assert rep["skipped"] == [{"meter": A, "why": "no freeze dated 2026-12-01; no dated reading"}]
