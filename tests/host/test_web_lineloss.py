"""Asset register and line loss: CSV import checks, the rate per area from readings interpolated at the same
boundaries, the demo's under-registering area flagged and the normal one not, rates equal to a hand
computation from the simulator's registers, the CLI and the dashboard page."""

import random
import re
import subprocess
import sys
import time
from datetime import timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tools import demo_areas
from tools.headend import Ingest, assets, lineloss, synth, users, webapp
from tools.headend.pgstore import open_store
from tools.sim.meter_model import Meter

COMMAND = Path(sys.executable).parent / "bdmeter-headend"
T0 = 1795478400  # 2026-11-24T00:00:00Z
SH = ZoneInfo("Asia/Shanghai")


def _simulate(speedup=72000.0, steps=4, dt=0.25):
    """Every meter of both demo areas, as the simulator counts them: [{meter: fwd kWh}] every `dt` seconds.

    Each meter counts its energy up to the moment it is read; so that reading eight meters one after the
    other does not give the later ones a little more time, each is wound back to exactly `dt` since its
    previous reading before it is read (the simulator integrates from its last update to now)."""
    meters = [Meter(s, random.Random(7), speedup) for area in demo_areas.AREAS for s in demo_areas.specs(area)]
    out = []
    for k in range(steps):
        sample = {}
        for m in meters:
            if k:
                m._last = time.monotonic() - dt
            sample[m.address] = m.registers()[0x00010000]
        out.append(sample)
    return out


@pytest.fixture(scope="module")
def simulated():
    return _simulate()


def _store(path, samples, spacing=3600):
    """Readings at T0 + k * spacing for every meter; the terminal reading area k's meters is terminal k."""
    store = open_store(path)
    ing = Ingest(store)
    for n, area in enumerate(demo_areas.AREAS):
        tid = "86123456789020%d" % n
        addrs = [s.address for s in demo_areas.specs(area)]
        ing.handle("bdmeter/%s/register" % tid, synth.register(1, T0, addrs, 40.8 + n / 100, 111.7, imei=tid,
                                                                 inc="0000aaaa"), now=T0)
        seq = 2
        for k, sample in enumerate(samples):
            for a in addrs:
                ing.handle("bdmeter/%s/energy" % tid, synth.energy(seq, T0 + k * spacing, a, sample[a], inc="0000aaaa"),
                           now=T0 + k * spacing)
                seq += 1
    assets.import_csv(store, demo_areas.register_csv())
    return store


def test_rates_equal_a_hand_computation_and_the_bad_area_stands_out(tmp_path, simulated, backend):
    store = _store(backend.target(tmp_path / "f.db"), simulated)
    # boundaries between the readings: every meter is interpolated at the same instants
    t_from, t_to = T0 + 1800, T0 + 3600 * (len(simulated) - 1) - 900
    rows = {r["area"]: r for r in lineloss.compute(store, t_from, t_to, timezone.utc, "whole")}
    store.close()
    for area, (_loss, customers) in demo_areas.AREAS.items():
        r = rows[area]
        assert not r["missing"], r["missing"]
        # by hand, from the simulator's registers: each meter's register at a boundary is the reading before it
        # plus the rise to the next reading (an hour later) in proportion to the time, the rise rounded to
        # hundredths half to even (energy.py)
        def at(meter, t):
            k = (t - T0) // 3600
            a, b = Decimal(str(simulated[k][meter])), Decimal(str(simulated[k + 1][meter]))
            frac = Decimal(t - T0 - 3600 * k) / 3600
            return a + ((b - a) * frac).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)

        def used(meter):
            return at(meter, t_to) - at(meter, t_from)

        supply = used(demo_areas.SUPPLY[area])
        cust = sum(used(m) for m, _, _, _ in customers)
        assert r["supply_kwh"] == supply and r["customers_kwh"] == cust
        assert r["rate"] == (supply - cust) / supply
        # and the loads give the same rate, within the registers' hundredths
        assert float(r["rate"]) == pytest.approx(demo_areas.expected_rate(area), abs=0.002)
    normal, bad = rows["TA-01 Xincheng"], rows["TA-02 Saihan"]
    assert Decimal("0.04") <= normal["rate"] <= Decimal("0.07") and not normal["flagged"]
    assert bad["rate"] > Decimal("0.20") and bad["flagged"]


def test_daily_rates_need_readings_on_both_sides_of_each_midnight(tmp_path, simulated, backend):
    store = _store(backend.target(tmp_path / "f.db"), simulated, spacing=86400 // 2)
    rows = lineloss.compute(store, T0, T0 + 86400 * 3, timezone.utc, "day")
    store.close()
    days = {}
    for r in rows:
        days.setdefault(r["from"], []).append(r)
    # readings at 0 h, 12 h, 24 h, 36 h: day 1 (0..24 h) is whole, day 2 ends after the last reading
    first, second = days[T0], days[T0 + 86400]
    assert all(r["rate"] is not None for r in first)
    assert all(r["rate"] is None and r["missing"] for r in second)


def test_register_import_refuses_bad_files_whole():
    with pytest.raises(ValueError, match="first line"):
        assets.parse_csv("a,b,c\n")
    with pytest.raises(ValueError, match="line 3: role 'feeder'"):
        assets.parse_csv("meter,area,role,customer\n000000000001,A,supply,\n000000000002,A,feeder,\n")
    with pytest.raises(ValueError, match="line 2: meter '12' is not a 12-digit"):
        assets.parse_csv("meter,area,role,customer\n12,A,supply,\n")
    with pytest.raises(ValueError, match="second supply meter"):
        assets.parse_csv("meter,area,role,customer\n000000000001,A,supply,\n000000000002,A,supply,\n")
    with pytest.raises(ValueError, match="area B has no supply meter"):
        assets.parse_csv("meter,area,role,customer\n000000000001,A,supply,\n000000000002,B,customer,x\n")
    with pytest.raises(ValueError, match="listed twice"):
        assets.parse_csv("meter,area,role,customer\n000000000001,A,supply,\n000000000001,A,customer,\n")


def test_cli_imports_and_flags(tmp_path, simulated, backend):
    db = backend.target(tmp_path / "f.db")
    _store(db, simulated).close()
    csv_path = tmp_path / "assets.csv"
    csv_path.write_text(demo_areas.register_csv())

    def run(*argv):
        return subprocess.run([str(COMMAND)] + list(argv), capture_output=True, text=True, timeout=60)

    p = run("assets", "import", str(csv_path), "--db", str(db))
    assert p.returncode == 0 and "8 meters in 2 areas" in p.stdout, p.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("meter,area,role,customer\n1,A,supply,\n")
    p = run("assets", "import", str(bad), "--db", str(db))
    assert p.returncode == 2 and "line 2" in p.stderr
    p = run("lineloss", "--db", str(db), "--from", "2026-11-24T00:30:00Z", "--to", "2026-11-24T02:45:00Z",
            "--step", "whole", "--csv", str(tmp_path / "ll.csv"))
    assert p.returncode == 0, p.stderr
    lines = {ln.split()[0] + " " + ln.split()[1]: ln for ln in p.stdout.splitlines() if ln.startswith("TA-")}
    assert "FLAGGED" in lines["TA-02 Saihan"] and "FLAGGED" not in lines["TA-01 Xincheng"]
    assert "TA-02 Saihan" in (tmp_path / "ll.csv").read_text()


def test_dashboard_page_flags_the_area_and_admins_import(tmp_path, simulated, backend):
    db = backend.target(tmp_path / "f.db")
    store = _store(db, simulated)
    users.add_user(store, "root", "admin", "root-admin-pw")
    users.add_user(store, "vic", "viewer", "vic-viewer-pw")
    app = webapp.create_app(webapp.Settings(str(db), tz=SH), store=store)

    def login(name, pw):
        c = app.test_client()
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
        assert c.post("/login", data={"user": name, "password": pw, "csrf": csrf}).status_code == 302
        c.csrf = re.search(r'data-csrf="([^"]+)"', c.get("/lineloss").text).group(1)
        return c

    c = login("vic", "vic-viewer-pw")
    page = c.get("/lineloss?from=2026-11-24T08:30:00&to=2026-11-24T10:45:00&step=whole").text
    flagged = re.findall(r'<tr class="flagged" data-area="([^"]+)"', page)
    assert flagged == ["TA-02 Saihan"]
    assert 'data-area="TA-01 Xincheng"' in page
    # on the map: each area at its supply meter, the under-registering one flagged
    data = c.get("/api/map?from=2026-11-24T08:30:00&to=2026-11-24T10:45:00").get_json()
    areas = {a["area"]: a for a in data["areas"]}
    assert areas["TA-02 Saihan"]["flagged"] and not areas["TA-01 Xincheng"]["flagged"]
    assert areas["TA-01 Xincheng"]["rate"].endswith("%") and areas["TA-02 Saihan"]["lat"] == pytest.approx(40.81)
    # a viewer may not change the register; an admin may
    r = c.post("/assets", data={"csrf": c.csrf, "csv": demo_areas.register_csv()})
    assert r.status_code == 403
    a = login("root", "root-admin-pw")
    r = a.post("/assets", data={"csrf": a.csrf, "csv": "meter,area,role,customer\n000090000100,X,supply,\n"})
    assert r.status_code == 302
    assert list(assets.areas(store)) == ["X"]
    r = a.post("/assets", data={"csrf": a.csrf, "csv": "meter,area,role,customer\n1,X,supply,\n"})
    assert r.status_code == 400 and "12-digit" in r.text
    store.close()
