"""Regional energy report: totals against synthetic consumption, grid and GeoJSON regions, CSV and map PNG."""

import csv
import json
import math
import random

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tools.headend import Ingest, cli, mapimg, report, synth
from tools.headend.pgstore import open_store

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


def _register_at(pts, t):
    """The register interpolated linearly at t between the readings either side (held beyond the ends)."""
    if t <= pts[0][0]:
        return pts[0][1]
    for (t0, r0), (t1, r1) in zip(pts, pts[1:]):
        if t0 <= t < t1:
            return r0 + (r1 - r0) * (t - t0) / (t1 - t0)
    return pts[-1][1]


def _expected(terminals, key, t_from=FROM, t_to=TO):
    """Per key(lat, lon): the sum over meters of the register interpolated at TO minus that at FROM."""
    out = {}
    for t in terminals:
        for pts in t["series"].values():
            k = key(t["lat"], t["lon"])
            out[k] = out.get(k, 0.0) + _register_at(pts, t_to) - _register_at(pts, t_from)
    return out


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory, backend):
    terminals = _fleet()
    path = backend.target(tmp_path_factory.mktemp("report") / "fleet.db")
    store = open_store(path)
    _load(store, terminals)
    store.close()
    return terminals, path


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
    for k in want:  # each end of each meter is rounded to hundredths
        assert got[k] == pytest.approx(want[k], abs=0.021)
    assert sum(got.values()) == pytest.approx(sum(want.values()), abs=0.2)
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

    rep = report.compute(open_store(db), FROM, TO, regions=report.load_geojson(path))
    want = _expected(terminals, region)
    got = {r["name"]: r["kwh"] for r in rep["regions"]}
    assert got["Empty"] == 0.0
    for k in want:
        assert float(got[k]) == pytest.approx(want[k], abs=0.2)
    assert float(rep["total_kwh"]) == pytest.approx(sum(want.values()), abs=0.2)
    png = mapimg.draw(rep, tmp_path / "regions.png", size=(640, 480))
    with Image.open(png) as img:
        assert img.size == (640, 480)
        # the map is not blank: region shading and points put many colours on it
        assert len(img.getcolors(maxcolors=1 << 16) or []) > 20


def test_period_without_readings_and_meters_that_went_backwards(tmp_path, backend):
    store = backend.open(tmp_path / "f.db")
    ing = Ingest(store)
    t = "bdmeter/861234567890123/"
    ing.handle(t + "register", synth.register(1, T0, ["000072007201", "000072007202"], 40.84, 111.75))
    ing.handle(t + "energy", synth.energy(2, T0 + 100, "000072007201", 500.0))
    ing.handle(t + "energy", synth.energy(3, T0 + 200, "000072007201", 20.0))  # meter swapped
    ing.handle(t + "energy", synth.energy(7, T0 + 300, "000072007201", 21.5))
    ing.handle(t + "energy", synth.energy(4, T0 + 100, "000072007202", 10.0))
    ing.handle(t + "energy", synth.energy(5, 50, "000072007202", 30.0, tsrc="none"))  # no date: ignored
    ing.handle(t + "energy", synth.energy(6, T0 + 300, "000072007202", 12.5))
    rep = report.compute(store, T0, T0 + 1000, grid_deg=0.02)
    # the step down counts as nothing; the new meter's 1.5 kWh count
    assert rep["total_kwh"] == Decimal("4.00") and rep["skipped"] == []
    m201 = next(m for m in rep["meters"] if m["meter"] == "000072007201")
    assert m201["kwh"] == Decimal("1.50") and [r["ts"] for r in m201["resets"]] == [T0 + 200]
    assert (m201["how_from"], m201["how_to"]) == ("held", "held")
    empty = report.compute(store, T0 + 5000, T0 + 9000, grid_deg=0.02)
    assert empty["regions"] == [] and len(empty["skipped"]) == 2 and empty["total_kwh"] == 0
    report.write_csv(empty, tmp_path / "e.csv")
    assert _csv(tmp_path / "e.csv") == []
    report.write_meters_csv(rep, tmp_path / "m.csv")
    assert {r["meter"]: r["energy_kwh"] for r in _csv(tmp_path / "m.csv")} == {"000072007201": "1.50",
                                                                            "000072007202": "2.50"}
    with Image.open(mapimg.draw(empty, tmp_path / "e.png")) as img:
        assert img.size == (1000, 800)
    with pytest.raises(ValueError):
        report.compute(store, T0 + 10, T0, grid_deg=0.02)
    store.close()


def test_boundaries_interpolate_between_the_readings_either_side(tmp_path, backend):
    store = backend.open(tmp_path / "f.db")
    ing = Ingest(store)
    t = "bdmeter/861234567890123/"
    ing.handle(t + "register", synth.register(1, T0, ["000072007201"], 40.84, 111.75))
    for seq, (ts, fwd) in enumerate([(T0, 100.0), (T0 + 3600, 101.0), (T0 + 7200, 103.01)], 2):
        ing.handle(t + "energy", synth.energy(seq, ts, "000072007201", fwd))

    def e(a, b):
        return report.compute(store, T0 + a, T0 + b, grid_deg=0.02)["total_kwh"]

    assert e(0, 3600) == Decimal("1.00") and e(1800, 3600) == Decimal("0.50")
    # at 5400 s the register is 102.005, rounded half to even: 102.00
    assert e(1800, 5400) == Decimal("1.50") and e(5400, 7200) == Decimal("1.01")
    assert e(-3600, 1800) == Decimal("0.50")  # before the first reading: held at it
    assert e(7000, 99999) == Decimal("0.11")  # after the last reading: held at it
    assert e(1800, 5400) + e(5400, 7200) == e(1800, 7200)
    store.close()


@pytest.fixture(scope="module")
def split_db(tmp_path_factory, backend):
    """Three meters with irregular readings (one steps down: meter replaced) over a day."""
    rnd = random.Random(11)
    path = backend.target(tmp_path_factory.mktemp("split") / "fleet.db")
    store = open_store(path)
    ing = Ingest(store)
    for k in range(3):
        t = "bdmeter/86123456789000%d/" % k
        meter = "00007200720%d" % k
        ing.handle(t + "register", synth.register(1, T0, [meter], 40.80 + k * 0.03, 111.70))
        ts, fwd = T0 + rnd.randrange(0, 900), rnd.uniform(0, 5000)
        for seq in range(2, 60):
            ing.handle(t + "energy", synth.energy(seq, ts, meter, fwd))
            ts += rnd.choice((0, 1, 7, 300, 900, 1800, 3000))
            fwd = 3.0 if (k == 2 and seq == 30) else fwd + rnd.uniform(0, 3)
    store.close()
    return path


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=-3600, max_value=30 * 3600), min_size=3, max_size=7, unique=True))
def test_consecutive_periods_add_up_exactly_to_the_whole(split_db, points):
    points = sorted(points)
    store = open_store(split_db)
    try:
        whole = report.compute(store, T0 + points[0], T0 + points[-1], grid_deg=0.02)
        parts = [report.compute(store, T0 + a, T0 + b, grid_deg=0.02) for a, b in zip(points, points[1:])]
    finally:
        store.close()
    def d(x):  # a figure to the hundredth, as printed
        return Decimal("%.2f" % x)

    def of(rep, meter):
        return next((d(m["kwh"]) for m in rep["meters"] if m["meter"] == meter), Decimal(0))

    assert sum((d(p["total_kwh"]) for p in parts), Decimal(0)) == d(whole["total_kwh"])
    for meter in ("000072007200", "000072007201", "000072007202"):
        assert sum((of(p, meter) for p in parts), Decimal(0)) == of(whole, meter)
    for rep in parts + [whole]:
        assert all(m["kwh"] >= 0 and m["kwh"] == d(m["kwh"]) for m in rep["meters"])


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
