"""The dashboard through Flask's test client: login and roles, CSRF, the fleet table's states and counts, the
terminal page's chart, alarms, the regional report's CSV and GeoJSON, the audit log, keys encrypted at rest."""

import json
import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import webfleet

from tools.headend import keyring, report, users, webapp
from tools.headend.pgstore import open_store as Store

COMMAND = Path(sys.executable).parent / "bdmeter-headend"


@pytest.fixture
def db(tmp_path, backend):
    return webfleet.build(backend.target(tmp_path / "fleet.db"))


@pytest.fixture
def app(db):
    return webapp.create_app(webapp.Settings(db, tz=ZoneInfo("Asia/Shanghai"), broker=None))


def _csrf(text):
    return re.search(r'name="csrf" value="([^"]+)"', text).group(1)


def login(app, name):
    c = app.test_client()
    csrf = _csrf(c.get("/login").text)
    r = c.post("/login", data={"user": name, "password": webfleet.PASSWORDS[name], "csrf": csrf})
    assert r.status_code == 302, r.text
    c.csrf = _csrf(c.get("/fleet").text)
    return c


def test_pages_need_a_login_and_a_bad_password_is_refused(app):
    c = app.test_client()
    assert c.get("/fleet").status_code == 302
    assert c.get("/api/map").status_code == 401
    csrf = _csrf(c.get("/login").text)
    r = c.post("/login", data={"user": "ada", "password": "wrong-password", "csrf": csrf})
    assert r.status_code == 401 and "wrong user name or password" in r.text
    r = c.post("/login", data={"user": "nobody", "password": "whatever1", "csrf": csrf})
    assert r.status_code == 401
    assert c.get("/fleet").status_code == 302
    # a login without the form's token is refused too
    assert c.post("/login", data={"user": "ada", "password": webfleet.PASSWORDS["ada"]}).status_code == 403


def test_fleet_table_states_counts_search_and_sort(app):
    c = login(app, "vic")
    page = c.get("/fleet").text
    states = dict(re.findall(r'data-tid="(\d+)" data-state="(\w+)"', page))
    want = {tid: state for tid, _, _, _, state in webfleet.terminals(0)}
    assert states == want
    assert 'id="count-online">online 3<' in page and 'id="count-silent">silent 1<' in page
    assert 'id="count-offline">offline 1<' in page
    assert "times in <span id=\"zone\">Asia/Shanghai (UTC+08:00)" in page
    only = dict(re.findall(r'data-tid="(\d+)" data-state="(\w+)"', c.get("/fleet?state=silent").text))
    assert only == {"861234567890103": "silent"}
    # search by meter address finds the terminal reading it
    hit = re.findall(r'data-tid="(\d+)"', c.get("/fleet?q=000072007222").text)
    assert hit == ["861234567890102"]
    order = re.findall(r'data-tid="(\d+)"', c.get("/fleet?sort=tid&dir=desc").text)
    assert order == sorted(want, reverse=True)


def test_fleet_table_pages(app, monkeypatch):
    monkeypatch.setattr(webapp, "PAGE", 2)
    c = login(app, "vic")
    seen = []
    for n in (1, 2, 3):
        page = c.get("/fleet?page=%d" % n).text
        seen += re.findall(r'data-tid="(\d+)"', page)
    assert seen == sorted(t[0] for t in webfleet.terminals(0))
    assert "terminals 5–5 of 5" in c.get("/fleet?page=9").text  # past the end: the last page
    assert c.get("/fleet?page=x").status_code == 200


def test_terminal_page_shows_chart_history_events_health(app, db):
    c = login(app, "vic")
    page = c.get("/terminal/861234567890101").text
    bars = re.findall(r'<rect class="bar"[^>]*><title>([\d-]+): ([\d.]+) kWh</title>', page)
    assert len(bars) >= 2 and all(float(v) > 0 for _, v in bars)
    assert "relocation" in page and "outbox_overflow" in page
    assert 'id="heartbeats"' in page and "0.1.0" in page
    assert "Your role (viewer) can look but not send commands" in page
    assert c.get("/terminal/nope").status_code == 404


def test_daily_bars_equal_the_energy_of_each_local_day(app, db):
    c = login(app, "vic")
    page = c.get("/terminal/861234567890100").text
    bars = re.findall(r'<title>([\d-]+): ([\d.]+) kWh</title>', page)
    from datetime import datetime, timedelta

    tz = ZoneInfo("Asia/Shanghai")
    store = Store(db)
    for day, value in bars:
        d = datetime.fromisoformat(day).replace(tzinfo=tz)
        rep = report.compute(store, int(d.timestamp()), int((d + timedelta(days=1)).timestamp()), grid_deg=1)
        want = sum(float(m["kwh"]) for m in rep["meters"] if m["meter"] == "000072007201")
        assert float(value) == pytest.approx(want, abs=0.005), day
    store.close()


def test_viewer_is_refused_commands_and_operator_needs_the_csrf_token(app, db):
    v = login(app, "vic")
    r = v.post("/terminal/861234567890100/command", json={"op": "read"}, headers={"X-CSRF-Token": v.csrf})
    assert r.status_code == 403 and "viewer" in r.get_json()["error"]
    o = login(app, "ada")
    r = o.post("/terminal/861234567890100/command", json={"op": "read"})
    assert r.status_code == 403 and "CSRF" in r.get_json()["error"]
    # right role and token: the dashboard has no broker here, which is said and audited
    r = o.post("/terminal/861234567890100/command", json={"op": "read"}, headers={"X-CSRF-Token": o.csrf})
    assert r.status_code == 503
    r = o.post("/terminal/861234567890100/command", json={"op": "config.set", "args": "poll_s"},
               headers={"X-CSRF-Token": o.csrf})
    assert r.status_code == 400 and "KEY=VALUE" in r.get_json()["error"]
    store = Store(db)
    log = users.audit_log(store)
    store.close()
    assert [(x["who"], x["op"], x["error"]) for x in log] == [("ada", "read", "no broker configured")]
    assert "no broker configured" in o.get("/audit").text


def test_report_csv_and_geojson_match_the_report(app, db):
    c = login(app, "vic")
    page = c.get("/report").text
    href = re.search(r'href="/report.csv\?([^"]+)"', page).group(1).replace("&amp;", "&")
    csv_text = c.get("/report.csv?" + href).text.splitlines()
    assert csv_text[0] == "region,meters,energy_kwh,period_from,period_to"
    total = sum(float(line.split(",")[-3]) for line in csv_text[1:])
    shown = re.search(r'id="total">([\d.]+)<', page).group(1)
    assert total == pytest.approx(float(shown))
    geo = json.loads(c.get("/report.geojson?" + href).data)
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == len(csv_text) - 1
    assert sum(float(f["properties"]["energy_kwh"]) for f in geo["features"]) == pytest.approx(total)
    assert c.get("/report.csv?from=2026-13-01").status_code == 400


def test_map_data_has_every_terminal_and_shaded_regions(app):
    c = login(app, "vic")
    data = c.get("/api/map").get_json()
    assert {t["tid"]: t["state"] for t in data["terminals"]} == {t[0]: t[4] for t in webfleet.terminals(0)}
    assert data["regions"]["features"] and all("energy_kwh" in f["properties"] for f in data["regions"]["features"])
    page = c.get("/")
    assert "/vendor/leaflet/dist/leaflet.js" in page.text
    # nothing from another origin: no CDN
    assert not re.search(r'(src|href)="(https?:)?//', page.text)
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


def test_alarms_list_every_kind_present(app):
    c = login(app, "vic")
    kinds = set(re.findall(r'<tr data-kind="([^"]+)"', c.get("/alarms").text))
    assert kinds == {"silent terminal", "terminal offline", "relocation", "outbox overflow", "clock fault"}


def test_only_admins_see_users(app):
    assert login(app, "ada").get("/users").status_code == 403
    assert "vic" in login(app, "root").get("/users").text


def test_passwords_are_scrypt_hashes(db):
    store = Store(db)
    rows = store.query("SELECT name, hash FROM users")
    store.close()
    for r in rows:
        assert r["hash"].startswith("scrypt$32768$8$1$") and webfleet.PASSWORDS[r["name"]] not in r["hash"]
        assert users.verify_password(webfleet.PASSWORDS[r["name"]], r["hash"])


def test_command_keys_are_encrypted_at_rest_with_the_master_key(tmp_path, monkeypatch, backend):
    master = tmp_path / "master.key"
    keyring.new_master_key_file(str(master))
    monkeypatch.setenv(keyring.ENV_FILE, str(master))
    store = backend.open(tmp_path / "k.db")
    store.set_key("861234567890100", webfleet.KEY)
    raw = store.query("SELECT key_hex FROM keys")[0]["key_hex"]
    assert raw.startswith("aesgcm1:") and webfleet.KEY not in raw
    assert store.key("861234567890100") == webfleet.KEY
    # a value moved to another terminal's row does not decrypt
    with store.tx() as d:
        d.execute("INSERT INTO keys VALUES(?, ?)", ("861234567890999", raw))
    with pytest.raises(keyring.KeyringError, match="does not decrypt"):
        store.key("861234567890999")
    monkeypatch.delenv(keyring.ENV_FILE)
    with pytest.raises(keyring.KeyringError, match="BDMETER_MASTER_KEY") as e:
        store.key("861234567890100")
    assert webfleet.KEY not in str(e.value)
    store.close()


def test_user_command_adds_lists_and_refuses_bad_input(tmp_path, backend):
    db = backend.target(tmp_path / "u.db")
    Store(db).close()

    def run(*argv, stdin=""):
        return subprocess.run([str(COMMAND), "user"] + list(argv) + ["--db", db], input=stdin, capture_output=True,
                              text=True, timeout=30)

    p = run("add", "eve", "--role", "operator", "--password-stdin", stdin="correct horse\n")
    assert p.returncode == 0, p.stderr
    assert run("list").stdout.split() == ["eve", "operator"]
    p = run("add", "eve", "--role", "admin", "--password-stdin", stdin="another one\n")
    assert p.returncode == 2 and "exists" in p.stderr
    p = run("add", "bob", "--password-stdin", stdin="short\n")
    assert p.returncode == 2 and "shorter than 8" in p.stderr and "short\n" not in p.stderr
    store = Store(db)
    assert users.authenticate(store, "eve", "correct horse")["role"] == "operator"
    assert users.authenticate(store, "eve", "wrong horse") is None
    store.close()


def test_serve_command_serves_and_stops_on_sigint(db, tmp_path):
    import signal
    import socket
    import time
    import urllib.request

    db_arg = str(db)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # started the way a non-interactive shell starts a background job: SIGINT ignored
    p = subprocess.Popen([str(COMMAND), "serve", "--db", db_arg, "--bind", "127.0.0.1:%d" % port],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/login" % port, timeout=2) as r:
                    assert r.status == 200 and b"Log in" in r.read()
                break
            except OSError:
                assert time.monotonic() < deadline and p.poll() is None, "serve did not answer"
                time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert "Asia/Shanghai" in p.stdout.read()
