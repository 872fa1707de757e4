"""Energy consumed per region in a period: per-meter `fwd` differences summed by registered position."""

import csv
import json
import math
from datetime import datetime, timezone

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


def load_geojson(path):
    """Regions from a GeoJSON FeatureCollection of Polygon/MultiPolygon features."""
    with open(path) as f:
        doc = json.load(f)
    features = doc.get("features", []) if doc.get("type") == "FeatureCollection" else [doc]
    regions = []
    for i, feat in enumerate(features):
        geom = feat.get("geometry") or {}
        props = feat.get("properties") or {}
        name = str(props.get("name") or props.get("id") or feat.get("id") or "region-%d" % (i + 1))
        if geom.get("type") == "Polygon":
            polys = [geom["coordinates"]]
        elif geom.get("type") == "MultiPolygon":
            polys = geom["coordinates"]
        else:
            raise ValueError("%s: feature %s is not a Polygon or MultiPolygon" % (path, name))
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
        " JOIN registrations g ON g.tid = m.tid AND g.seq = m.seq"
        " WHERE m.meter = ? AND g.lat IS NOT NULL AND g.lon IS NOT NULL", (meter,))
    if not rows:
        return None
    # a registration sent before the clock was set carries seconds since boot: use arrival time instead
    timed = sorted(((r["ts"] if r["tsrc"] != "none" else r["received"], r["seq"], r) for r in rows),
                   key=lambda x: (x[0], x[1]))
    before = [x for x in timed if x[0] <= t_to]
    r = (before[-1] if before else timed[0])[2]
    return r["tid"], r["lat"], r["lon"]


def compute(store, t_from, t_to, grid_deg=None, regions=None):
    """The report: {'from','to','meters': [...], 'regions': [...], 'skipped': [...]}."""
    if (grid_deg is None) == (regions is None):
        raise ValueError("give exactly one of a grid size or regions")
    if t_to <= t_from:
        raise ValueError("the period ends before it starts")
    meters, skipped, by_name = [], [], {}
    if regions is not None:
        for reg in regions:
            by_name[reg.name] = {"region": reg, "kwh": 0.0, "meters": []}
    for (meter,) in store.query("SELECT DISTINCT meter FROM readings ORDER BY meter"):
        first = store.query("SELECT ts, fwd FROM readings WHERE meter = ? AND ts >= ? AND tsrc != 'none'"
                            " AND fwd IS NOT NULL ORDER BY ts, seq LIMIT 1", (meter, t_from))
        last = store.query("SELECT ts, fwd FROM readings WHERE meter = ? AND ts <= ? AND tsrc != 'none'"
                           " AND fwd IS NOT NULL ORDER BY ts DESC, seq DESC LIMIT 1", (meter, t_to))
        if not first or not last or first[0]["ts"] > last[0]["ts"]:
            skipped.append({"meter": meter, "why": "no reading in the period"})
            continue
        kwh = last[0]["fwd"] - first[0]["fwd"]
        if kwh < 0:
            skipped.append({"meter": meter, "why": "fwd register went backwards (meter replaced?)"})
            continue
        where = meter_position(store, meter, t_to)
        if where is None:
            skipped.append({"meter": meter, "why": "no registered position"})
            continue
        tid, lat, lon = where
        if grid_deg is not None:
            cell = grid_cell(lat, lon, grid_deg)
            entry = by_name.setdefault(cell.name, {"region": cell, "kwh": 0.0, "meters": []})
        else:
            entry = next((e for e in by_name.values()
                          if e["region"] is not None and e["region"].contains(lat, lon)), None)
            if entry is None:
                entry = by_name.setdefault(OUTSIDE, {"region": None, "kwh": 0.0, "meters": []})
        entry["kwh"] += kwh
        entry["meters"].append(meter)
        name = entry["region"].name if entry["region"] is not None else OUTSIDE
        meters.append({"meter": meter, "tid": tid, "lat": lat, "lon": lon, "region": name,
                       "first_ts": first[0]["ts"], "first_fwd": first[0]["fwd"],
                       "last_ts": last[0]["ts"], "last_fwd": last[0]["fwd"], "kwh": kwh})
    rows = []
    for name in sorted(by_name, key=lambda n: (n == OUTSIDE, n)):
        e = by_name[name]
        rows.append({"name": name, "kwh": e["kwh"], "meters": e["meters"], "region": e["region"]})
    return {"from": t_from, "to": t_to, "grid_deg": grid_deg, "meters": meters, "regions": rows,
            "skipped": skipped, "total_kwh": sum(m["kwh"] for m in meters)}


def write_csv(report, path):
    """Regions as CSV rows: region, meters, energy_kwh and the region's bounding box."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["region", "meters", "energy_kwh", "lat_min", "lon_min", "lat_max", "lon_max",
                    "period_from", "period_to"])
        for r in report["regions"]:
            b = r["region"].bounds if r["region"] is not None else ("", "", "", "")
            w.writerow([r["name"], len(r["meters"]), "%.3f" % r["kwh"]] + list(b)
                       + [iso(report["from"]), iso(report["to"])])
    return path


def write_meters_csv(report, path):
    """One row per meter: the two readings used and the difference."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["meter", "terminal", "lat", "lon", "region", "first_ts", "first_fwd", "last_ts", "last_fwd",
                    "energy_kwh"])
        for m in report["meters"]:
            w.writerow([m["meter"], m["tid"], m["lat"], m["lon"], m["region"], iso(m["first_ts"]), m["first_fwd"],
                        iso(m["last_ts"]), m["last_fwd"], "%.3f" % m["kwh"]])
    return path
