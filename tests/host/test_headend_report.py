"""Regional energy report: totals against synthetic consumption, grid and GeoJSON regions, CSV and map PNG."""

import csv
import json
import math
import random

import pytest
from PIL import Image

from tools.headend import Ingest, Store, cli, mapimg, report, synth

T0 = 1795478400  # 2026-11-24T00:00:00Z
STEP = 1800
FROM, TO = T0 + 3 * 3600 + 600, T0 + 40 * 3600 + 100  # not aligned on readings
DEG = 0.02


def _fleet(seed=7):
    """Terminals around Hohhot with one or two meters each, half-hourly readings over two days."""
    rnd = random.Random(seed)
    terminals = []
    for k in range(12):
        tid = "8612345678901%02d" % k
        lat, lon = 40.80 + rnd.random() * 0.09, 111.70 + rnd.random() * 0.11
        meters = ["0000720072%02d" % (2 * k + j) for j in range(1 + k % 2)]
        rate = 0.2 + rnd.random() * 2.0  # kWh per half hour
        series = {}
        for m in meters:
            fwd, pts = rnd.random() * 5000, []
            for i in range(96):
                pts.append((T0 + i * STEP + rnd.randrange(0, 60), round(fwd, 2)))
                fwd += rate * rnd.uniform(0.3, 1.7)
            series[m] = pts
        terminals.append({"tid": tid, "lat": round(lat, 6), "lon": round(lon, 6), "meters": meters,
                          "series": series})
    return terminals


def _load(store, terminals):
    ing = Ingest(store)
    for t in terminals:
        seq = 1
        ing.handle("bdmeter/%s/register" % t["tid"], synth.register(seq, T0 - 60, t["meters"], t["lat"], t["lon"],
                                                                   imei=t["tid"]))
        for m, pts in t["series"].items():
            for ts, fwd in pts:
                seq += 1
                assert ing.handle("bdmeter/%s/energy" % t["tid"], synth.energy(seq, ts, m, fwd)) == "stored"


def _expected(terminals, key):
    """Per key(lat, lon): the sum of (last fwd <= TO) - (first fwd >= FROM), computed from the series."""
    out = {}
    for t in terminals:
        for pts in t["series"].values():
            first = min((p for p in pts if p[0] >= FROM), key=lambda p: p[0])
            last = max((p for p in pts if p[0] <= TO), key=lambda p: p[0])
            k = key(t["lat"], t["lon"])
            out[k] = out.get(k, 0.0) + last[1] - first[1]
    return out


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory):
    terminals = _fleet()
    path = tmp_path_factory.mktemp("report") / "fleet.db"
    store = Store(path)
    _load(store, terminals)
    store.close()
    return terminals, str(path)


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_grid_report_totals_match_the_synthetic_consumption(fleet_db, tmp_path, capsys):
    terminals, db = fleet_db
    out = tmp_path / "grid"
    assert cli.main(["report", "--db", db, "--from", report.iso(FROM), "--to", report.iso(TO),
                     "--grid", str(DEG), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for suffix in (".csv", "-meters.csv", ".png"):
        assert str(out) + suffix in printed
    rows = _csv(str(out) + ".csv")
    want = _expected(terminals, lambda lat, lon: "%.4f,%.4f" % (math.floor(lat / DEG) * DEG,
                                                                math.floor(lon / DEG) * DEG))
    got = {r["region"]: float(r["energy_kwh"]) for r in rows}
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=0.002)
    assert sum(got.values()) == pytest.approx(sum(want.values()), abs=0.01)
    assert sum(int(r["meters"]) for r in rows) == 18
    meters = _csv(str(out) + "-meters.csv")
    assert len(meters) == 18 and all(float(m["energy_kwh"]) > 0 for m in meters)
    with Image.open(str(out) + ".png") as img:
        assert img.size == (1000, 800) and img.format == "PNG"


def _rect(lon0, lat0, lon1, lat1):
    return [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]


def test_geojson_regions_with_a_hole_and_a_multipolygon(fleet_db, tmp_path):
    terminals, db = fleet_db
    hole_t = terminals[0]
    hole = _rect(hole_t["lon"] - 0.002, hole_t["lat"] - 0.002, hole_t["lon"] + 0.002, hole_t["lat"] + 0.002)
    geo = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "West"},
         "geometry": {"type": "Polygon", "coordinates": [_rect(111.69, 40.79, 111.75, 40.90), hole]}},
        {"type": "Feature", "properties": {"name": "East"},
         "geometry": {"type": "MultiPolygon", "coordinates": [[_rect(111.75, 40.79, 111.82, 40.845)],
                                                              [_rect(111.75, 40.845, 111.82, 40.90)]]}},
        {"type": "Feature", "id": "Empty", "properties": {},
         "geometry": {"type": "Polygon", "coordinates": [_rect(111.60, 40.60, 111.65, 40.65)]}},
    ]}
    path = tmp_path / "regions.geojson"
    path.write_text(json.dumps(geo))

    def region(lat, lon):
        if (lat, lon) == (hole_t["lat"], hole_t["lon"]) and lon < 111.75:
            return report.OUTSIDE
        return "West" if lon < 111.75 else "East"

    rep = report.compute(Store(db), FROM, TO, regions=report.load_geojson(path))
    want = _expected(terminals, region)
    got = {r["name"]: r["kwh"] for r in rep["regions"]}
    assert got["Empty"] == 0.0
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=0.002)
    assert rep["total_kwh"] == pytest.approx(sum(want.values()), abs=0.01)
    png = mapimg.draw(rep, tmp_path / "regions.png", size=(640, 480))
    with Image.open(png) as img:
        assert img.size == (640, 480)
        # the map is not blank: region shading and points put many colours on it
        assert len(img.getcolors(maxcolors=1 << 16) or []) > 20


def test_period_without_readings_and_meters_that_went_backwards(tmp_path):
    store = Store(tmp_path / "f.db")
    ing = Ingest(store)
    t = "bdmeter/861234567890123/"
    ing.handle(t + "register", synth.register(1, T0, ["000072007201", "000072007202"], 40.84, 111.75))
    ing.handle(t + "energy", synth.energy(2, T0 + 100, "000072007201", 500.0))
    ing.handle(t + "energy", synth.energy(3, T0 + 200, "000072007201", 20.0))  # meter swapped
    ing.handle(t + "energy", synth.energy(4, T0 + 100, "000072007202", 10.0))
    ing.handle(t + "energy", synth.energy(5, 50, "000072007202", 30.0, tsrc="none"))  # no date: ignored
    ing.handle(t + "energy", synth.energy(6, T0 + 300, "000072007202", 12.5))
    rep = report.compute(store, T0, T0 + 1000, grid_deg=0.02)
    assert rep["total_kwh"] == pytest.approx(2.5)
    assert [s["meter"] for s in rep["skipped"]] == ["000072007201"]
    empty = report.compute(store, T0 + 5000, T0 + 9000, grid_deg=0.02)
    assert empty["regions"] == [] and len(empty["skipped"]) == 2
    report.write_csv(empty, tmp_path / "e.csv")
    assert _csv(tmp_path / "e.csv") == []
    with Image.open(mapimg.draw(empty, tmp_path / "e.png")) as img:
        assert img.size == (1000, 800)
    with pytest.raises(ValueError):
        report.compute(store, T0 + 10, T0, grid_deg=0.02)
    store.close()


def test_helpers():
    assert report.parse_time("2026-11-24") == T0
    assert report.parse_time("2026-11-24T08:00:00+08:00") == T0
    assert report.parse_time("2026-11-24T00:00:00Z") == T0
    assert [mapimg.nice_length(x) for x in (0.37, 1.0, 3.9, 14.0)] == [0.2, 1.0, 2.0, 10.0]
    assert mapimg.ramp(0.0) == mapimg.RAMP[0] and mapimg.ramp(1.0) == mapimg.RAMP[-1]
    assert report.grid_cell(40.84, 111.76, 0.02).name == "40.8400,111.7600"


def test_report_needs_an_existing_database(tmp_path, capsys):
    assert cli.main(["report", "--db", str(tmp_path / "none.db"), "--from", "2026-11-24", "--to", "2026-11-25",
                     "--grid", "0.02"]) == 2
    assert "no database" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_demo_places_terminals_in_distinct_cells_over_the_city():
    from tools.demo import CITY, placements

    for n in (5, 10):
        pts = placements(n)
        cells = {report.grid_cell(lat, lon, DEG).name for lat, lon, _ in pts}
        assert len(cells) == n
        span = max(math.hypot((a[0] - b[0]) * 110.574, (a[1] - b[1]) * 111.32 * math.cos(math.radians(CITY[0])))
                   for a in pts for b in pts)
        assert 6 < span < 12
