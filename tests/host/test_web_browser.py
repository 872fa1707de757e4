"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): log in, every terminal on the map
and in the table with its state, a terminal's chart, a signed query answered by the real firmware (unix port)
over mosquitto, the regional CSV download, a viewer refused commands, a bad login refused."""

import csv
import io
import os
import time
from zoneinfo import ZoneInfo

import pytest
import webfleet

from tools.headend import assets, webapp
from tools.headend.service import Headend
from tools.procs import ROOT
from tools.rig import TerminalRig

CHROMIUM = "/usr/bin/chromium"
RIG_TID = "861234567890123"
RIG_METER = "000072009901"

pytestmark = pytest.mark.system


def _launch(p):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("Debian's chromium is missing at %s: run `make venv` as root (tools/bootstrap.sh installs it) "
                    "or apt-get install chromium" % CHROMIUM)
    problem = webapp.vendor_ready()
    if problem:
        pytest.fail(problem)
    return p.chromium.launch(executable_path=CHROMIUM, headless=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The demo-like fleet plus one real terminal (firmware under the unix port), the head-end storing what it
    publishes, and the dashboard served on a free loopback port."""
    from playwright.sync_api import sync_playwright

    if not (ROOT / "build" / "mpy" / "main.py").exists():
        pytest.fail("build/mpy/main.py is missing: run `make mpy` (make test does) before the browser tests")
    tmp = tmp_path_factory.mktemp("web")
    db = str(webfleet.build(tmp / "fleet.db"))
    rig = TerminalRig(tmp / "rig", imei=RIG_TID, address=RIG_METER, key=webfleet.KEY)
    head = server = None
    try:
        head = Headend("127.0.0.1:%d" % rig.broker.port, db, heartbeat_s=2, check_s=0.5).start()
        head.store.set_key(RIG_TID, webfleet.KEY)
        # one transformer area over two meters of the fleet, drawn on the map at its supply meter
        assets.import_csv(head.store, "meter,area,role,customer\n000072007221,TA-X,supply,\n"
                          "000072007222,TA-X,customer,C-1\n")
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            t = [x for x in head.store.fleet() if x["tid"] == RIG_TID]
            if t and t[0]["state"] == "online" and t[0]["lat"] is not None and t[0]["energy"]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the real terminal did not come online with a position and a reading:\n"
                                 + rig.fw.output()[-3000:])
        app = webapp.create_app(webapp.Settings(db, broker="127.0.0.1:%d" % rig.broker.port,
                                                tz=ZoneInfo("Asia/Shanghai"), heartbeat_s=60,
                                                command_timeout_s=20), store=head.store)
        server, url = webapp.background(app)
        with sync_playwright() as p:
            browser = _launch(p)
            try:
                yield {"url": url, "browser": browser, "head": head}
            finally:
                browser.close()
    finally:
        if server is not None:
            server.close()
        if head is not None:
            head.stop()
        rig.close()


def _login(site, name, password=None):
    ctx = site["browser"].new_context(accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(15000)
    page.goto(site["url"] + "/login")
    page.fill("input[name=user]", name)
    page.fill("input[name=password]", password or webfleet.PASSWORDS[name])
    page.click("button[type=submit]")
    return page


def _expected(site):
    want = {tid: state for tid, _, _, _, state in webfleet.terminals(0)}
    want[RIG_TID] = "online"
    return want


def test_bad_login_is_refused(site):
    page = _login(site, "ada", "not-the-password")
    assert page.inner_text("#login-error") == "wrong user name or password"
    page.goto(site["url"] + "/fleet")
    assert "/login" in page.url
    page.context.close()


def test_map_and_table_show_every_terminal_with_its_state(site):
    page = _login(site, "vic")
    page.wait_for_selector("#map[data-ready]")
    on_map = page.evaluate("Object.fromEntries(window.bdmeterMap.terminals.map(t => [t.tid, t.state]))")
    assert on_map == _expected(site)
    # the markers are in the cluster layer, drawn as clusters or points
    assert page.evaluate("window.bdmeterMap.cluster.getLayers().length") == len(_expected(site))
    assert page.locator(".leaflet-marker-icon.marker-cluster").count() + page.locator("canvas").count() > 0
    assert page.evaluate("window.bdmeterMap.regions.getLayers().length") > 0  # shaded region polygons
    assert page.evaluate("window.bdmeterMap.areas.map(a => [a.area, a.flagged, a.rate])") == [["TA-X", False,
                                                                                              "0.00 %"]]
    page.click("text=Fleet")
    rows = page.locator("#fleet tbody tr[data-tid]")
    got = {rows.nth(i).get_attribute("data-tid"): rows.nth(i).locator("td.state").inner_text()
           for i in range(rows.count())}
    assert got == _expected(site)
    assert page.inner_text("#count-online") == "online 4"
    assert "Asia/Shanghai" in page.inner_text("#zone")
    page.context.close()


def test_terminal_page_chart_and_a_query_answered_by_the_real_firmware(site):
    page = _login(site, "ada")
    page.goto(site["url"] + "/terminal/861234567890102")
    assert page.locator("#chart rect.bar").count() >= 2
    page.goto(site["url"] + "/terminal/" + RIG_TID)
    page.select_option("#op", "query")
    page.fill("#args", "address position energy")
    page.click("#command button")
    page.wait_for_selector("#answer.ok, #answer.error", timeout=30000)
    answer = page.inner_text("#answer")
    assert page.get_attribute("#answer", "class") == "ok", answer
    assert RIG_METER in answer and '"ok": true' in answer
    page.reload()
    assert "ada (operator)" in page.inner_text("table.audit")
    page.context.close()


def test_regional_csv_downloads(site):
    page = _login(site, "vic")
    page.click("text=Report")
    total = float(page.inner_text("#total"))
    with page.expect_download() as dl:
        page.click("#csv")
    path = dl.value.path()
    rows = list(csv.DictReader(io.StringIO(open(path).read())))
    assert dl.value.suggested_filename.startswith("energy-") and rows
    assert sum(float(r["energy_kwh"]) for r in rows) == pytest.approx(total)
    page.context.close()


def test_viewer_is_refused_commands(site):
    page = _login(site, "vic")
    page.goto(site["url"] + "/terminal/" + RIG_TID)
    assert page.locator("#command").count() == 0
    assert "can look but not send commands" in page.inner_text("#no-commands")
    # even a hand-made request with the session's CSRF token is refused by the server
    status = page.evaluate("""fetch('/terminal/%s/command', {method: 'POST', headers: {'Content-Type':
        'application/json', 'X-CSRF-Token': document.body.dataset.csrf}, body: JSON.stringify({op: 'read'})})
        .then(r => r.status)""" % RIG_TID)
    assert status == 403
    page.context.close()
