"""Fleet store and dashboard figures: messages stored per second through mosquitto by 1 and 4 `$share` workers on
SQLite and on PostgreSQL; the fleet view's server time and in-browser render time at 5,000 terminals; and a
screenshot of the map at 5,000 terminals (build/bench/map-5000.png)."""

import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[2]
SHOT = ROOT / "build" / "bench" / "map-5000.png"
INGEST_MESSAGES = 4000
INGEST_TERMINALS = 40
FLEET = 5000
T0 = 1795478400
CHROMIUM = "/usr/bin/chromium"


def _messages(n, terminals):
    from tools.headend import synth

    per = n // terminals
    return [("bdmeter/8612345679%05d/energy" % k,
             synth.energy(seq, T0 + 60 * seq, "0000730%05d" % k, 10 + seq * 0.01, inc="%08x" % (k + 1)))
            for k in range(terminals) for seq in range(1, per + 1)]


def publish(port, n):
    """The publisher (its own process, so it does not share a GIL with what it measures)."""
    msgs = _messages(n, INGEST_TERMINALS)
    clients = []
    for i in range(4):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-web-pub-%d" % i)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port, keepalive=60)
        c.loop_start()
        clients.append(c)
    infos = [clients[i % 4].publish(t, p, qos=1) for i, (t, p) in enumerate(msgs)]
    for info in infos:
        info.wait_for_publish(timeout=300)
    print("PUBLISHED %d" % len(msgs), flush=True)
    for c in clients:
        c.disconnect()
        c.loop_stop()


def _mosquitto(tmp):
    """A mosquitto for the ingest runs (each worker's log is named by its broker's port, so waiting for one
    worker's subscription never reads another run's log)."""
    from tools import procs as h

    port = h.free_port()
    conf = Path(tmp) / ("mosquitto-%d.conf" % port)
    conf.write_text("listener %d %s\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                    "max_inflight_messages 0\n" % (port, h.LOOPBACK))
    proc = h.Proc([h.mosquitto_path(), "-c", conf], "mosquitto-%d" % port, log_dir=tmp)
    h.wait_port(port, timeout=10)
    return proc, port


def _ingest(target, workers, tmp):
    """Messages stored per second by `workers` head-end processes sharing one subscription and one database."""
    from tools import procs as h
    from tools.headend.pgstore import open_store

    open_store(target).close()
    broker, port = _mosquitto(tmp)
    procs = []
    store = None
    try:
        for i in range(workers):
            p = h.Proc([sys.executable, "-m", "tools.headend", "run", "--broker", "127.0.0.1:%d" % port, "--db",
                        target, "--share", "bench"], "worker-%d-%d-%d" % (port, workers, i), log_dir=tmp)
            procs.append(p)
            p.wait_output("subscribed to", timeout=30)
        store = open_store(target)
        t0 = time.perf_counter()
        procs.append(h.Proc([sys.executable, "-m", "tools.bench.bench_web", "publish", str(port),
                             str(INGEST_MESSAGES)], "publisher-%d" % port, log_dir=tmp))
        deadline = time.monotonic() + 300
        n, last, moved = 0, -1, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - moved < 30:
            n = store.count("readings")
            if n >= INGEST_MESSAGES:
                break
            if n != last:
                last, moved = n, time.monotonic()
            time.sleep(0.05)
        dt = time.perf_counter() - t0
        if n < INGEST_MESSAGES:
            raise RuntimeError("%d workers on %s: only %d of %d stored (no progress for 30 s or 300 s in all)"
                               % (workers, target.split("?")[0], n, INGEST_MESSAGES))
        return round(INGEST_MESSAGES / dt)
    finally:
        if store is not None:
            store.close()
        for p in procs:
            p.kill()
        broker.kill()


def _fleet_db(target, n=FLEET):
    """n terminals over the Hohhot area, denser in town: a registration, two readings, heartbeats, a status."""
    from tools.headend import Ingest, synth, users
    from tools.headend.pgstore import open_store

    rnd = random.Random(5)
    store = open_store(target)
    ing = Ingest(store, heartbeat_s=300)
    now = time.time()
    batch = []
    for k in range(n):
        tid = "86200000%07d" % k
        if k % 3:  # two thirds in town, the rest spread over the county
            r, a = abs(rnd.gauss(0, 0.06)), rnd.uniform(0, 2 * math.pi)
        else:
            r, a = rnd.uniform(0, 0.6), rnd.uniform(0, 2 * math.pi)
        lat, lon = 40.84 + r * math.sin(a), 111.75 + r * math.cos(a) * 1.3
        meter = "%012d" % (500000000 + k)
        t = "bdmeter/%s/" % tid
        inc = "%08x" % (k + 1)
        batch += [(t + "status", synth.status_online(int(now) - 7200), False),
                  (t + "register", synth.register(1, int(now) - 7200, [meter], lat, lon, imei=tid, inc=inc), False),
                  (t + "energy", synth.energy(2, int(now) - 7200, meter, 1000.0 + k % 97, inc=inc), False),
                  (t + "energy", synth.energy(3, int(now) - 60, meter, 1003.0 + k % 97 + (k % 7) * 0.5, inc=inc),
                   False),
                  (t + "heartbeat", synth.heartbeat(int(now) - 600, 1000), False)]
        if k % 50 == 7:
            batch.append((t + "status", b'{"v":2,"state":"offline"}', False))
        if len(batch) >= 2000:
            ing.handle_many(batch, now=now - 30)
            batch = []
    ing.handle_many(batch, now=now - 30)
    users.add_user(store, "bench", "viewer", "bench-password", replace=True)
    return store


def _server_times(store, target):
    """Seconds the server needs for the fleet (table data), the fleet page and the map's data at 5,000 terminals."""
    from zoneinfo import ZoneInfo

    from tools.headend import webapp

    out = {}
    t = time.perf_counter()
    fleet = store.fleet()
    out["fleet_view_5000_store_s"] = round(time.perf_counter() - t, 3)
    assert len(fleet) == FLEET
    app = webapp.create_app(webapp.Settings(target, tz=ZoneInfo("Asia/Shanghai"), grid_deg=0.05), store=store)
    c = app.test_client()
    import re

    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
    c.post("/login", data={"user": "bench", "password": "bench-password", "csrf": csrf})
    for name, url in (("fleet_page_5000_server_s", "/fleet"), ("map_data_5000_server_s", "/api/map")):
        t = time.perf_counter()
        r = c.get(url)
        out[name] = round(time.perf_counter() - t, 3)
        assert r.status_code == 200
    out["fleet_page_5000_bytes"] = len(c.get("/fleet").data)
    return app, out


def _browser(app):
    """Render times in headless Chromium and the map's screenshot."""
    from playwright.sync_api import sync_playwright

    from tools.headend import webapp

    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError("Debian's chromium is missing at %s (make venv installs it as root)" % CHROMIUM)
    server, url = webapp.background(app)
    out = {}
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = b.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(120000)
                page.goto(url + "/login")
                page.fill("input[name=user]", "bench")
                page.fill("input[name=password]", "bench-password")
                page.click("button[type=submit]")
                page.wait_for_selector("#map[data-ready]")
                out["map_5000_data_fetch_ms"] = round(page.evaluate("window.bdmeterMap.fetchMs"))
                out["map_5000_render_ms"] = round(page.evaluate("window.bdmeterMap.renderMs"))
                out["map_5000_clusters_drawn"] = page.locator(".marker-cluster").count()
                page.wait_for_timeout(500)
                SHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SHOT))
                out["map_5000_screenshot"] = str(SHOT.relative_to(ROOT))
                t = time.perf_counter()
                page.goto(url + "/fleet")
                page.wait_for_selector("#fleet tbody tr")
                out["fleet_page_5000_load_ms"] = round((time.perf_counter() - t) * 1000)
                out["fleet_page_5000_dom_ms"] = round(page.evaluate(
                    "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"))
            finally:
                b.close()
    finally:
        server.close()
    return out


def run():
    from tools.pgserver import PgServer

    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        pg = PgServer()
        try:
            for workers in (1, 4):
                figures["ingest_sqlite_%d_worker%s_msg_per_s" % (workers, "s" if workers > 1 else "")] = _ingest(
                    str(Path(tmp) / ("ingest-%d.db" % workers)), workers, tmp)
                figures["ingest_postgresql_%d_worker%s_msg_per_s" % (workers, "s" if workers > 1 else "")] = \
                    _ingest(pg.new_schema("ingest%d" % workers), workers, tmp)
            target = str(Path(tmp) / "fleet5000.db")
            t = time.perf_counter()
            store = _fleet_db(target)
            figures["fleet_5000_build_s"] = round(time.perf_counter() - t, 1)
            app, server = _server_times(store, target)
            figures.update(server)
            figures.update(_browser(app))
            store.close()
            pg_target = pg.new_schema("fleet5000")
            store = _fleet_db(pg_target)
            t = time.perf_counter()
            store.fleet()
            figures["fleet_view_5000_store_postgresql_s"] = round(time.perf_counter() - t, 3)
            store.close()
        finally:
            pg.close()
    figures["cores"] = os.cpu_count()
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "publish":
        publish(int(sys.argv[2]), int(sys.argv[3]))
    else:
        for k, v in run().items():
            print("%-44s %s" % (k, v))
