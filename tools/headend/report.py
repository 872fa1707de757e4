"""Energy consumed per region in a period: per-meter energy summed by registered position.

Each meter's energy comes from its own frozen values (meter_records.frozen_energy) when the period runs
from a midnight to a midnight of the meters' time zone and both of its boundary freezes are stored, so
whole days add up exactly to the month; otherwise from its live readings interpolated at the boundaries
(energy.py). Each meter's row says which (`source` frozen or live) and, for live, why.
"""

import csv
import json
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tools.headend import meter_records
from tools.headend.energy import meter_energy

METER_TZ = timezone(timedelta(hours=8), "UTC+08:00")  # the terminals' default meter_utc_offset_s
NOT_WHOLE_DAYS = "the period is not whole days at the meters' midnight"

OUTSIDE = "(outside)"


def parse_time(text):
    """ISO 8601 date or date-time to Unix seconds; a time without zone is UTC."""
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- regions -----------------------------------------------------------------------------------------

class Region:
    """A named area: polygons of rings of (lon, lat); the first ring of each polygon is its outline."""

    def __init__(self, name, polygons):
        self.name = name
        self.polygons = polygons
        lons = [p[0] for poly in polygons for p in poly[0]]
        lats = [p[1] for poly in polygons for p in poly[0]]
        self.bounds = (min(lats), min(lons), max(lats), max(lons))

    def contains(self, lat, lon):
        for poly in self.polygons:
            if _in_ring(poly[0], lon, lat) and not any(_in_ring(hole, lon, lat) for hole in poly[1:]):
                return True
        return False


def _in_ring(ring, x, y):
    inside = False
    n = len(ring)
    for i in range(n):
        x1, y1 = ring[i][0], ring[i][1]
        x2, y2 = ring[(i + 1) % n][0], ring[(i + 1) % n][1]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _ring(coords, where):
    if not isinstance(coords, list) or len(coords) < 4:
        raise ValueError("%s: a ring needs at least 4 positions" % where)
    for p in coords:
        if (not isinstance(p, list) or len(p) < 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                           for x in p[:2])):
            raise ValueError("%s: a position is not [lon, lat]" % where)
        if not (-180 <= p[0] <= 180 and -90 <= p[1] <= 90):
            raise ValueError("%s: position %r is not a longitude and latitude" % (where, p[:2]))
    return coords


def _polygon(coords, where):
    if not isinstance(coords, list) or not coords:
        raise ValueError("%s: a polygon is not a list of rings" % where)
    return [_ring(r, where) for r in coords]


def load_geojson(path):
    """Regions from a GeoJSON FeatureCollection (or one Feature) of Polygon/MultiPolygon features.

    Every problem raises ValueError naming the file."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError("%s: not JSON (%s)" % (path, e))
    if not isinstance(doc, dict) or doc.get("type") not in ("FeatureCollection", "Feature"):
        raise ValueError("%s: not a GeoJSON FeatureCollection or Feature" % path)
    features = doc.get("features") if doc["type"] == "FeatureCollection" else [doc]
    if not isinstance(features, list):
        raise ValueError("%s: `features` is not a list" % path)
    regions = []
    for i, feat in enumerate(features):
        if not isinstance(feat, dict):
            raise ValueError("%s: feature %d is not an object" % (path, i + 1))
        geom = feat.get("geometry") or {}
        props = feat.get("properties") or {}
        if not isinstance(geom, dict) or not isinstance(props, dict):
            raise ValueError("%s: feature %d has a bad geometry or properties" % (path, i + 1))
        name = str(props.get("name") or props.get("id") or feat.get("id") or "region-%d" % (i + 1))
        where = "%s: feature %s" % (path, name)
        coords = geom.get("coordinates")
        if geom.get("type") == "Polygon":
            polys = [_polygon(coords, where)]
        elif geom.get("type") == "MultiPolygon":
            if not isinstance(coords, list) or not coords:
                raise ValueError("%s: a MultiPolygon is not a list of polygons" % where)
            polys = [_polygon(c, where) for c in coords]
        else:
            raise ValueError("%s is not a Polygon or MultiPolygon" % where)
        regions.append(Region(name, polys))
    if not regions:
        raise ValueError("%s: no regions" % path)
    return regions


def grid_cell(lat, lon, deg):
    """The grid cell (as a Region) holding a point; cells are aligned on multiples of `deg`."""
    # a small epsilon keeps a point that sits on a cell edge (after float rounding) in one cell
    i, j = math.floor(lat / deg + 1e-9), math.floor(lon / deg + 1e-9)
    lat0, lon0, lat1, lon1 = i * deg, j * deg, (i + 1) * deg, (j + 1) * deg
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return Region("%.4f,%.4f" % (lat0, lon0), [[ring]])


# -- computation ---------------------------------------------------------------------------------------

def meter_position(store, meter, t_to):
    """(tid, lat, lon) of the meter's registration in force at `t_to` (the earliest one if all are later)."""
    rows = store.query(
        "SELECT g.tid, g.seq, g.ts, g.tsrc, g.received, g.lat, g.lon FROM registration_meters m"
        " JOIN registrations g ON g.tid = m.tid AND g.inc = m.inc AND g.seq = m.seq"
        " WHERE m.meter = ? AND g.lat IS NOT NULL AND g.lon IS NOT NULL", (meter,))
    if not rows:
        return None
    # a registration sent before the clock was set carries seconds since boot: use arrival time instead
    timed = sorted(((r["ts"] if r["tsrc"] != "none" else r["received"], r["seq"], r) for r in rows),
                   key=lambda x: (x[0], x[1]))
    before = [x for x in timed if x[0] <= t_to]
    r = (before[-1] if before else timed[0])[2]
    return r["tid"], r["lat"], r["lon"]


def whole_days(t_from, t_to, tz=METER_TZ):
    """(first date, date after the last) 'YYYY-MM-DD' when both ends are midnights in `tz`, else None."""
    ends = [datetime.fromtimestamp(t, tz) for t in (t_from, t_to)]
    if any((d.hour, d.minute, d.second, d.microsecond) != (0, 0, 0, 0) for d in ends):
        return None
    return ends[0].date().isoformat(), ends[1].date().isoformat()


def meter_period(store, meter, t_from, t_to, days):
    """One meter's row (source frozen or live, `note` why live) or (None, why) when it has nothing."""
    note = NOT_WHOLE_DAYS
    if days is not None:
        e, note = meter_records.frozen_energy(store, meter, days[0], days[1])
        if e is not None:
            n = store.query("SELECT count(*) FROM readings WHERE meter = ? AND tsrc != 'none' AND ts > ? AND ts <= ?",
                            (meter, t_from, t_to))[0][0]
            return dict(e, readings=n, source="frozen", note=""), None
    e, why = meter_energy(store, meter, t_from, t_to)
    if e is None:
        return None, why if days is None else "%s; %s" % (note, why)
    return dict(e, source="live", note=note), None


def compute(store, t_from, t_to, grid_deg=None, regions=None, tz=METER_TZ):
    """The report: {'from','to','meters': [...], 'regions': [...], 'skipped': [...], 'total_kwh', 'days'}.

    `tz`: the meters' time zone (their midnight freezes). Energies are Decimals in hundredths of a kWh;
    consecutive periods add up exactly (energy.py), and so do whole days from frozen values."""
    if (grid_deg is None) == (regions is None):
        raise ValueError("give exactly one of a grid size or regions")
    if t_to <= t_from:
        raise ValueError("the period ends before it starts")
    meters, skipped, by_name = [], [], {}
    zero = Decimal("0.00")
    if regions is not None:
        for reg in regions:
            by_name[reg.name] = {"region": reg, "kwh": zero, "meters": []}
    days = whole_days(t_from, t_to, tz)
    sql = "SELECT DISTINCT meter FROM readings"
    if days is not None:
        sql += " UNION SELECT meter FROM frozen WHERE date IN (?, ?)"
    for (meter,) in store.query(sql + " ORDER BY meter", days or ()):
        e, why = meter_period(store, meter, t_from, t_to, days)
        if e is None:
            skipped.append({"meter": meter, "why": why})
            continue
        where = meter_position(store, meter, t_to)
        if where is None:
            skipped.append({"meter": meter, "why": "no registered position", "kwh": e["kwh"]})
            continue
        tid, lat, lon = where
        if grid_deg is not None:
            cell = grid_cell(lat, lon, grid_deg)
            entry = by_name.setdefault(cell.name, {"region": cell, "kwh": zero, "meters": []})
        else:
            entry = next((e2 for e2 in by_name.values()
                          if e2["region"] is not None and e2["region"].contains(lat, lon)), None)
            if entry is None:
                entry = by_name.setdefault(OUTSIDE, {"region": None, "kwh": zero, "meters": []})
        entry["kwh"] += e["kwh"]
        entry["meters"].append(meter)
        name = entry["region"].name if entry["region"] is not None else OUTSIDE
        meters.append(dict(e, meter=meter, tid=tid, lat=lat, lon=lon, region=name))
    rows = []
    for name in sorted(by_name, key=lambda n: (n == OUTSIDE, n)):
        e = by_name[name]
        rows.append({"name": name, "kwh": e["kwh"], "meters": e["meters"], "region": e["region"]})
    return {"from": t_from, "to": t_to, "grid_deg": grid_deg, "meters": meters, "regions": rows,
            "skipped": skipped, "total_kwh": sum((m["kwh"] for m in meters), zero), "days": days}


def write_csv(report, path):
    """Regions as CSV rows: region, meters, energy_kwh and the region's bounding box."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["region", "meters", "energy_kwh", "lat_min", "lon_min", "lat_max", "lon_max",
                    "period_from", "period_to"])
        for r in report["regions"]:
            b = r["region"].bounds if r["region"] is not None else ("", "", "", "")
            w.writerow([r["name"], len(r["meters"]), str(r["kwh"])] + list(b)
                       + [iso(report["from"]), iso(report["to"])])
    return path


def write_meters_csv(report, path):
    """One row per meter: the register at both ends of the period (frozen, interpolated, read or held), the
    energy, and its source (frozen values or live readings, with why live)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["meter", "terminal", "lat", "lon", "region", "fwd_at_from", "from_is", "fwd_at_to", "to_is",
                    "readings_in_period", "energy_kwh", "register_went_down_at", "source", "source_note"])
        for m in report["meters"]:
            w.writerow([m["meter"], m["tid"], m["lat"], m["lon"], m["region"], str(m["fwd_from"]), m["how_from"],
                        str(m["fwd_to"]), m["how_to"], m["readings"], str(m["kwh"]),
                        " ".join(iso(r["ts"]) for r in m["resets"]), m["source"], m["note"]])
    return path
