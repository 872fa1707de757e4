"""The meters' own records at the head-end: daily frozen values, settlements and meter events, completeness,
whole-day energy.

A `frozen` record is kept once per (meter, date), whoever sent it and however often: the terminal may
send a freeze twice (docs/PROTOCOL.md). A second one with other content is counted (`frozen_conflict`)
and logged, the first kept. A `settle` record (a monthly settlement, same fields) is kept the same way per
(meter, date) in table `settlements` (`settle_again`, `settle_conflict`). A `meter_event` is kept per
(meter, kind, n); a later copy that brings the end of an event sent while still open replaces it.

Whole days: the energy of meter-local day D is frozen(D+1) - frozen(D) on the forward total, in exact
hundredths; the energy of days D1..D2 is frozen(D2+1) - frozen(D1). The days therefore add up exactly to
the period. Completeness of day D: the meters registered (any terminal's registration) with a freeze
dated D, over all registered meters, with the missing listed.
"""

import json
import logging
from datetime import date, timedelta
from decimal import Decimal

log = logging.getLogger("bdmeter.headend")

SCHEMA = """
CREATE TABLE IF NOT EXISTS frozen(
    meter TEXT NOT NULL, date TEXT NOT NULL, at TEXT, fwd_c INTEGER, fwd TEXT, rev TEXT,
    tid TEXT, inc TEXT, seq INTEGER, received REAL, PRIMARY KEY(meter, date)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settlements(
    meter TEXT NOT NULL, date TEXT NOT NULL, at TEXT, fwd_c INTEGER, fwd TEXT, rev TEXT,
    tid TEXT, inc TEXT, seq INTEGER, received REAL, PRIMARY KEY(meter, date)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meter_events(
    meter TEXT NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL, tid TEXT, ts INTEGER, start TEXT, end_ TEXT,
    data TEXT, received REAL, PRIMARY KEY(meter, kind, n)) WITHOUT ROWID;
"""

_FIELDS = ("v", "seq", "inc", "ts", "tsrc", "meter", "kind", "n")


def statements():
    return [s.strip() for s in SCHEMA.split(";") if s.strip()]


def centi(x):
    """A kWh number from JSON (2 decimals) as integer hundredths, exactly."""
    return int(Decimal(repr(float(x))).scaleb(2).to_integral_value())


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


# -- writes (inside a store transaction) ---------------------------------------------------------------

def add_frozen(store, tid, inc, m, values, now, table="frozen", kind="frozen"):
    db = store.db
    fwd = [centi(x) for x in m["fwd"]]
    rev = [centi(x) for x in m["rev"]] if "rev" in m else None
    row = db.execute("SELECT fwd, rev, at FROM %s WHERE meter = ? AND date = ?" % table,
                     (m["meter"], m["date"])).fetchone()
    if row is not None:
        if row["fwd"] != _dumps(fwd) or row["at"] != m["at"] or (rev is not None and row["rev"] != _dumps(rev)):
            store.bump(kind + "_conflict")
            log.warning("meter %s %s %s from %s differs from the one stored: kept the first", m["meter"], kind,
                        m["date"], tid)
        else:
            store.bump(kind + "_again")
        return
    db.execute("INSERT INTO %s(meter, date, at, fwd_c, fwd, rev, tid, inc, seq, received)"
               " VALUES(?,?,?,?,?,?,?,?,?,?)" % table,
               (m["meter"], m["date"], m["at"], fwd[0], _dumps(fwd), None if rev is None else _dumps(rev), tid, inc,
                m["seq"], now))


def add_settle(store, tid, inc, m, values, now):
    add_frozen(store, tid, inc, m, values, now, "settlements", "settle")


def add_meter_event(store, tid, inc, m, values, now):
    data = {k: v for k, v in m.items() if k not in _FIELDS}
    key = (m["meter"], m["kind"], m["n"])
    row = store.db.execute("SELECT end_ FROM meter_events WHERE meter = ? AND kind = ? AND n = ?", key).fetchone()
    if row is not None and (row["end_"] is not None or data.get("end") is None):
        store.bump("meter_event_again")
        return
    if row is not None:  # (the dialect SQLite and PostgreSQL share: no INSERT OR REPLACE)
        store.db.execute("DELETE FROM meter_events WHERE meter = ? AND kind = ? AND n = ?", key)
    store.db.execute("INSERT INTO meter_events(meter, kind, n, tid, ts, start, end_, data, received)"
                     " VALUES(?,?,?,?,?,?,?,?,?)",
                     key + (tid, int(m["ts"]), data.get("start") or data.get("at"), data.get("end"), _dumps(data),
                            now))


# -- reads --------------------------------------------------------------------------------------------------

def _days(d_from, d_to):
    d = date.fromisoformat(d_from)
    end = date.fromisoformat(d_to)
    out = []
    while d <= end:
        out.append(d.isoformat())
        d += timedelta(days=1)
    return out


def registered_meters(store):
    rows = store.query("SELECT DISTINCT meter FROM registration_meters UNION SELECT DISTINCT meter FROM frozen")
    return sorted(r[0] for r in rows)


def completeness(store, d_from, d_to):
    """Per day D1..D2: {"date", "have", "meters", "pct", "missing": [...]} over every registered meter."""
    meters = registered_meters(store)
    out = []
    for d in _days(d_from, d_to):
        have = {r[0] for r in store.query("SELECT meter FROM frozen WHERE date = ?", (d,))}
        missing = [a for a in meters if a not in have]
        n = len(meters) - len(missing)
        out.append({"date": d, "have": n, "meters": len(meters), "missing": missing,
                    "pct": round(100.0 * n / len(meters), 1) if meters else 0.0})
    return out


def _fwd(store, meter, d):
    rows = store.query("SELECT fwd_c FROM frozen WHERE meter = ? AND date = ?", (meter, d))
    return rows[0][0] if rows else None


def frozen_energy(store, meter, d_from, d_to):
    """The meter's energy from its 00:00 freeze of `d_from` to that of `d_to` (meter-local dates, d_to after
    d_from), as the report's row {"kwh", "fwd_from", "fwd_to", "how_from", "how_to", "resets"} (Decimal kWh),
    or (None, why) when a boundary freeze is missing or the register went down between them."""
    x, y = _fwd(store, meter, d_from), _fwd(store, meter, d_to)
    if x is None or y is None:
        return None, "no freeze dated %s" % (d_from if x is None else d_to)
    if y < x:
        return None, "the frozen register went down from %s to %s" % (d_from, d_to)
    return {"kwh": Decimal(y - x).scaleb(-2), "fwd_from": Decimal(x).scaleb(-2), "fwd_to": Decimal(y).scaleb(-2),
            "how_from": "frozen", "how_to": "frozen", "resets": []}, None


def day_energy(store, d_from, d_to, meters=None):
    """Whole days D1..D2 from frozen values: {"days": [{"date", "kwh", "meters": {m: kWh or None}}],
    "period_kwh", "period": {m: kWh or None}, "missing": [(meter, date)]} with Decimal kWh (2 places)."""
    meters = meters or registered_meters(store)
    days = _days(d_from, d_to)
    after = (date.fromisoformat(d_to) + timedelta(days=1)).isoformat()
    out, missing = [], []
    for d in days:
        nxt = (date.fromisoformat(d) + timedelta(days=1)).isoformat()
        per, total = {}, Decimal("0.00")
        for a in meters:
            x, y = _fwd(store, a, d), _fwd(store, a, nxt)
            if x is None or y is None:
                per[a] = None
                missing.append((a, d))
                continue
            per[a] = Decimal(y - x).scaleb(-2)
            total += per[a]
        out.append({"date": d, "kwh": total, "meters": per})
    period, ptotal = {}, Decimal("0.00")
    for a in meters:
        x, y = _fwd(store, a, days[0]), _fwd(store, a, after)
        period[a] = None if x is None or y is None else Decimal(y - x).scaleb(-2)
        if period[a] is not None:
            ptotal += period[a]
    return {"days": out, "period": period, "period_kwh": ptotal, "missing": missing}


def events(store, tid=None, meter=None, kind=None, limit=1000):
    """Meter events, newest first, optionally of one terminal, meter or kind."""
    where, args = [], []
    for col, val in (("tid", tid), ("meter", meter), ("kind", kind)):
        if val is not None:
            where.append("%s = ?" % col)
            args.append(val)
    sql = "SELECT * FROM meter_events" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY coalesce(start, '') DESC, meter, kind, n DESC LIMIT ?"
    out = []
    for r in store.query(sql, tuple(args) + (limit,)):
        d = dict(r)
        d["end"] = d.pop("end_")
        d["data"] = json.loads(d["data"]) if d["data"] else {}
        out.append(d)
    return out


def settlements(store, meter=None, tid=None, d_from=None, d_to=None):
    """Settlements, oldest first per meter: {"meter", "date", "at", "fwd": [kWh...], "rev", "tid", "kwh"} where
    `kwh` is the forward energy since the meter's previous settlement stored (None for its first, or when the
    register went down), Decimal with two places."""
    where, args = [], []
    for cond, val in (("meter = ?", meter), ("tid = ?", tid), ("date >= ?", d_from), ("date <= ?", d_to)):
        if val is not None:
            where.append(cond)
            args.append(val)
    sql = "SELECT * FROM settlements" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY meter, date"
    out = []
    for r in store.query(sql, tuple(args)):
        prev = store.query("SELECT fwd_c FROM settlements WHERE meter = ? AND date < ? ORDER BY date DESC LIMIT 1",
                           (r["meter"], r["date"]))
        step = None if not prev or r["fwd_c"] < prev[0][0] else Decimal(r["fwd_c"] - prev[0][0]).scaleb(-2)
        out.append({"meter": r["meter"], "date": r["date"], "at": r["at"], "tid": r["tid"],
                    "fwd": [Decimal(x).scaleb(-2) for x in json.loads(r["fwd"])],
                    "rev": [Decimal(x).scaleb(-2) for x in json.loads(r["rev"])] if r["rev"] else None, "kwh": step})
    return out
