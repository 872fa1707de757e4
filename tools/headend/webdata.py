"""What the dashboard shows, read from the store: a terminal's history, daily energy, alarms, map layers."""

import json
import time
from datetime import datetime, timedelta

from tools.headend import report
from tools.headend.view import stamp

EVENT_ALARMS = {"relocation": "relocation", "outbox_overflow": "outbox overflow", "clock_refused": "clock fault",
                "config_problems": "config problem", "config_fallback": "config problem"}
LIMIT = 50


def _loads(text):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def fmt_time(t, tz):
    """'2026-11-24 16:00:00' in zone `tz` (the page names the zone once), or '-'."""
    return "-" if t is None else datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S")


def record_time(ts, tsrc, received):
    """The time a record speaks of: its own stamp when dated, else its arrival."""
    return received if tsrc == "none" or ts is None else ts


def terminal(store, tid, tz, now=None):
    """Everything the terminal page shows, or None for an unknown terminal."""
    now = time.time() if now is None else now
    fleet = [t for t in store.fleet(now) if t["tid"] == tid]
    if not fleet:
        return None
    t = fleet[0]
    regs = [dict(r) for r in store.query(
        "SELECT inc, seq, ts, tsrc, why, meters, lat, lon, alt, hdop, nsat, imei, iccid, fw, csq, received"
        " FROM registrations WHERE tid = ? ORDER BY received DESC, seq DESC LIMIT ?", (tid, LIMIT))]
    for r in regs:
        r["meters"] = _loads(r["meters"]) or []
        r["at"] = fmt_time(record_time(r["ts"], r["tsrc"], r["received"]), tz)
    inst = {}
    for m in t["meters"]:
        rows = store.query("SELECT inst, ts, tsrc, received FROM readings WHERE tid = ? AND meter = ? AND inst IS NOT"
                           " NULL ORDER BY received DESC, seq DESC LIMIT 1", (tid, m))
        if rows:
            inst[m] = {"values": _loads(rows[0]["inst"]) or {},
                       "at": fmt_time(record_time(rows[0]["ts"], rows[0]["tsrc"], rows[0]["received"]), tz)}
    events = [dict(r, data=_loads(r["data"]), at=fmt_time(record_time(r["ts"], r["tsrc"], r["received"]), tz))
              for r in store.query("SELECT inc, seq, ts, tsrc, kind, data, received FROM events WHERE tid = ?"
                                   " ORDER BY received DESC, seq DESC LIMIT ?", (tid, LIMIT))]
    hbs = [dict(r, err=_loads(r["err"]), at=fmt_time(r["received"], tz))
           for r in store.query("SELECT received, ts, tsrc, up, csq, fix, nsat, outbox, heap, heap_peak, reset, err"
                                " FROM heartbeats WHERE tid = ? ORDER BY received DESC LIMIT 20", (tid,))]
    trans = [dict(r, at=fmt_time(r["at"], tz)) for r in store.query(
        "SELECT at, state, why FROM transitions WHERE tid = ? ORDER BY id DESC LIMIT 20", (tid,))]
    return {"t": t, "registrations": regs, "inst": inst, "events": events, "heartbeats": hbs, "transitions": trans,
            "incarnations": store.incarnations(tid), "last_seen": fmt_time(t["last_seen"], tz),
            "last_hb": fmt_time(t["last_hb"], tz), "daily": daily(store, t["meters"], tz, now)}


def daily(store, meters, tz, now=None, days=14):
    """[(day 'YYYY-MM-DD', kWh as float)] per day in zone `tz` for the last `days` days that have readings,
    summed over the meters: each meter's own freezes where `tz` midnights are the meters' and both are stored,
    else energy.py's interpolation at each local midnight (report.meter_period)."""
    now = time.time() if now is None else now
    if not meters:
        return []
    marks = ",".join("?" * len(meters))
    span = store.query("SELECT min(ts) AS a, max(ts) AS b FROM readings WHERE meter IN (%s) AND tsrc != 'none'"
                       % marks, tuple(meters))
    if not span or span[0]["a"] is None:
        return []
    first = datetime.fromtimestamp(max(span[0]["a"], span[0]["b"] - days * 86400), tz).date()
    last = datetime.fromtimestamp(span[0]["b"], tz).date()
    out = []
    d = first
    while d <= last:
        a = datetime(d.year, d.month, d.day, tzinfo=tz)
        b = a + timedelta(days=1)
        total = 0.0
        for m in meters:
            t0, t1 = int(a.timestamp()), int(b.timestamp())
            e, _ = report.meter_period(store, m, t0, t1, report.whole_days(t0, t1))
            if e is not None:
                total += float(e["kwh"])
        out.append((d.isoformat(), round(total, 2)))
        d += timedelta(days=1)
    return out


def chart_svg(points, width=640, height=220, unit="kWh"):
    """A bar chart of [(label, value)] as inline SVG markup (values and labels are escaped by the caller's
    template: this returns numbers and plain day strings only)."""
    pad_l, pad_b, pad_t = 56, 36, 12
    vmax = max([v for _, v in points] + [0.01])
    n = max(1, len(points))
    w = (width - pad_l - 8) / n
    bars = []
    for i, (label, v) in enumerate(points):
        h = (height - pad_b - pad_t) * v / vmax
        x = pad_l + i * w
        y = height - pad_b - h
        bars.append({"x": round(x + w * 0.1, 1), "y": round(y, 1), "w": round(w * 0.8, 1), "h": round(h, 1),
                     "day": label, "label": label[5:], "value": "%.2f" % v, "lx": round(x + w / 2, 1)})
    ticks = [{"y": round(height - pad_b - (height - pad_b - pad_t) * f, 1), "v": "%.2f" % (vmax * f)}
             for f in (0, 0.5, 1)]
    return {"width": width, "height": height, "bars": bars, "ticks": ticks, "unit": unit, "base": height - pad_b,
            "left": pad_l}


def alarms(store, tz, now=None, heartbeat_s=None):
    """Every alarm: (kind, tid, when, text), newest first."""
    now = time.time() if now is None else now
    out = []
    for t in store.fleet(now, heartbeat_s):
        if t["state"] in ("silent", "offline"):
            out.append({"kind": "silent terminal" if t["state"] == "silent" else "terminal offline",
                        "tid": t["tid"], "t": t["last_seen"],
                        "text": "last heard at %s" % fmt_time(t["last_seen"], tz)})
    marks = ",".join("?" * len(EVENT_ALARMS))
    for r in store.query("SELECT tid, ts, tsrc, kind, data, received FROM events WHERE kind IN (%s)"
                         " ORDER BY received DESC LIMIT 500" % marks, tuple(EVENT_ALARMS)):
        out.append({"kind": EVENT_ALARMS[r["kind"]], "tid": r["tid"], "t": record_time(r["ts"], r["tsrc"],
                                                                                       r["received"]),
                    "text": json.dumps(_loads(r["data"]), sort_keys=True)})
    # a meter is offline when its newest meter_offline/meter_online event says so
    last = {}
    for r in store.query("SELECT tid, ts, tsrc, kind, data, received FROM events WHERE kind IN"
                         " ('meter_offline', 'meter_online') ORDER BY received, seq"):
        d = _loads(r["data"]) or {}
        last[(r["tid"], d.get("meter") if isinstance(d, dict) else None)] = r
    for (tid, meter), r in last.items():
        if r["kind"] == "meter_offline":
            out.append({"kind": "meter offline", "tid": tid, "t": record_time(r["ts"], r["tsrc"], r["received"]),
                        "text": "meter %s" % meter})
    # clock fault: the newest heartbeat of a terminal carries no time
    for r in store.query("SELECT h.tid, h.received FROM heartbeats h JOIN (SELECT tid, max(received) AS m FROM"
                         " heartbeats GROUP BY tid) x ON x.tid = h.tid AND x.m = h.received WHERE h.tsrc = 'none'"):
        out.append({"kind": "clock fault", "tid": r["tid"], "t": r["received"],
                    "text": "the terminal's clock is not set"})
    # anomaly: a register that went down, and records stored twice with different content
    for r in store.query(
            "SELECT tid, meter, ts, fwd, prev FROM (SELECT tid, meter, ts, fwd, lag(fwd) OVER (PARTITION BY meter"
            " ORDER BY ts, rowid) AS prev FROM readings WHERE tsrc != 'none' AND fwd IS NOT NULL) AS w WHERE fwd < prev"
            " LIMIT 200"):
        out.append({"kind": "anomaly", "tid": r["tid"], "t": r["ts"],
                    "text": "meter %s register went down from %.2f to %.2f kWh" % (r["meter"], r["prev"], r["fwd"])})
    for r in store.query("SELECT tid, inc, seq, kind, received FROM conflicts ORDER BY id DESC LIMIT 100"):
        out.append({"kind": "anomaly", "tid": r["tid"], "t": r["received"],
                    "text": "%s record inc %s seq %d arrived again with other content" % (r["kind"], r["inc"] or "-",
                                                                                          r["seq"])})
    out.sort(key=lambda a: -(a["t"] or 0))
    for a in out:
        a["at"] = fmt_time(a["t"], tz)
    return out


def default_period(store, now=None):
    """(from, to): the span of the stored dated readings (whole seconds), or the last day when there are none."""
    now = int(time.time() if now is None else now)
    rows = store.query("SELECT min(ts) AS a, max(ts) AS b FROM readings WHERE tsrc != 'none'")
    if rows and rows[0]["a"] is not None and rows[0]["b"] > rows[0]["a"]:
        return int(rows[0]["a"]), int(rows[0]["b"])
    return now - 86400, now


def regional(store, t_from, t_to, regions=None, grid_deg=0.02):
    """The regional report (report.compute) over `regions` when given, else a grid."""
    if regions:
        return report.compute(store, t_from, t_to, regions=regions)
    return report.compute(store, t_from, t_to, grid_deg=grid_deg)


def geojson(rep):
    """The report's regions as a GeoJSON FeatureCollection with name, meters, energy_kwh and the period."""
    feats = []
    for r in rep["regions"]:
        if r["region"] is None:
            continue
        polys = r["region"].polygons
        geom = {"type": "Polygon", "coordinates": polys[0]} if len(polys) == 1 else \
            {"type": "MultiPolygon", "coordinates": polys}
        feats.append({"type": "Feature", "geometry": geom,
                      "properties": {"name": r["name"], "meters": len(r["meters"]), "energy_kwh": str(r["kwh"]),
                                     "period_from": report.iso(rep["from"]), "period_to": report.iso(rep["to"])}})
    return {"type": "FeatureCollection", "features": feats}


def markers(fleet, tz):
    """The terminals for the map: id, position, state, meters and the last time heard."""
    return [{"tid": t["tid"], "lat": t["lat"], "lon": t["lon"], "state": t["state"], "meters": t["meters"],
             "seen": fmt_time(t["last_seen"], tz)} for t in fleet if t["lat"] is not None and t["lon"] is not None]


def iso_local(t, tz):
    return stamp(t, tz)
