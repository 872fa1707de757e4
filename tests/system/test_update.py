"""A signed update of a running terminal end to end, and a new version that crashes at import rolling back.

The terminal runs from a copy of build/mpy (its own flash); the bundles are packed and signed with
tools/release; a chunk server answers the terminal's `upd` requests from the bundle on `updc`.
"""

import base64
import json
import shutil
import threading

import paho.mqtt.client as paho
import pytest

from harness import LOOPBACK, ROOT
from tools import release
from tools.rig import TerminalRig
from updkit import versioned_tree

pytestmark = pytest.mark.system

IMEI = "861234567890124"
PREFIX = "bdmeter/%s/" % IMEI


class ChunkServer:
    """Answers `upd` chunk requests from one bundle, as the head-end does."""

    def __init__(self, port):
        self.bundle = None
        self.served = 0
        self.lock = threading.Lock()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="chunks-" + IMEI)
        self.c.on_message = self._on
        self.c.on_connect = lambda c, ud, flags, rc, props: c.subscribe(PREFIX + "upd", qos=0)
        self.c.connect(LOOPBACK, port)
        self.c.loop_start()

    def _on(self, client, userdata, m):
        req = json.loads(m.payload)
        with self.lock:
            b = self.bundle
        if b is None or req.get("ver") != b.ver:
            return
        data = b.chunk(req["f"], req["off"], req["n"])
        ans = {"v": 2, "ver": b.ver, "f": req["f"], "off": req["off"]}
        if data is None:
            ans["error"] = "range"
        else:
            ans["data"] = base64.b64encode(data).decode()
            self.served += 1
        client.publish(PREFIX + "updc", json.dumps(ans), qos=0)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("update")
    key = d / "release.key"
    pub = release.keygen(key)
    bundles = {}
    crash = 'raise RuntimeError("boom at import")\n'
    for ver, app in (("0.2.0", None), ("0.3.0", crash)):
        tree = versioned_tree(d / ("tree-" + ver), ver, app)
        release.pack(key, tree, d / ("bundle-" + ver), ver)
        bundles[ver] = release.Bundle(d / ("bundle-" + ver))
    flash = d / "flash-code"
    shutil.copytree(ROOT / "build" / "mpy", flash)
    rig = TerminalRig(d / "rig", imei=IMEI, code=flash,
                      cfg={"update_pubkey": pub, "update_confirm_s": 30, "poll_s": 5, "heartbeat_s": 3})
    srv = ChunkServer(rig.broker.port)
    yield rig, srv, bundles, flash
    srv.close()
    rig.close()


def _update_events(rig, state):
    return [e["data"] for e in rig.of("event") if e.get("kind") == "update" and e["data"].get("state") == state]


def test_update_downloads_switches_and_confirms(setup):
    rig, srv, bundles, flash = setup
    rig.wait("a register", lambda: rig.of("register"), 90)
    assert rig.of("register")[-1]["fw"] == "0.1.0"
    srv.bundle = bundles["0.2.0"]
    rid, _ = rig.command("update", bundles["0.2.0"].offer())
    ans = rig.answer(rid)
    assert ans["ok"] and ans["result"] == {"accepted": "0.2.0", "from": "0.1.0"}, ans
    staged = rig.wait("update staged", lambda: _update_events(rig, "staged"), 120)
    assert staged[0]["slot"] == "a" and srv.served > 50
    rig.wait("a register from 0.2.0", lambda: [r for r in rig.of("register") if r.get("fw") == "0.2.0"], 60)
    done = rig.wait("update confirmed", lambda: _update_events(rig, "confirmed"), 90)
    assert done[0]["ver"] == "0.2.0"
    st = json.loads((flash / "slots.json").read_text())
    assert st["confirmed"] == "a" and st["ver"] == "0.2.0" and "trial" not in st
    beat = rig.wait("a full heartbeat from 0.2.0", lambda: [h for h in rig.of("heartbeat") if h.get("fw") == "0.2.0"])
    assert beat[0]["upd"]["state"] in ("trial", "confirmed")
    rid, _ = rig.command("status")
    status = rig.answer(rid)["result"]
    assert status["fw"] == "0.2.0" and status["upd"] == {"state": "confirmed"}


def test_replayed_older_and_same_version_refused(setup):
    rig, srv, bundles, flash = setup
    before = (flash / "slots.json").read_text()
    old = dict(bundles["0.2.0"].offer(), ver="0.1.0")
    rid, _ = rig.command("update", old)
    assert rig.answer(rid)["error"] == "downgrade_refused"
    rid, _ = rig.command("update", bundles["0.2.0"].offer())
    assert rig.answer(rid)["error"] == "same_version"
    assert (flash / "slots.json").read_text() == before


def test_new_version_crashing_at_import_rolls_back_and_reports(setup):
    rig, srv, bundles, flash = setup
    srv.bundle = bundles["0.3.0"]
    rid, _ = rig.command("update", bundles["0.3.0"].offer())
    assert rig.answer(rid)["ok"]
    rig.wait("0.3.0 staged", lambda: [e for e in _update_events(rig, "staged") if e["ver"] == "0.3.0"], 120)
    back = rig.wait("rollback reported", lambda: _update_events(rig, "rolled_back"), 90)
    assert back[0]["ver"] == "0.3.0" and back[0]["running"] == "0.2.0" and "boom at import" in back[0]["why"]
    st = json.loads((flash / "slots.json").read_text())
    assert st["confirmed"] == "a" and st["last"]["result"] == "rolled_back"
    rig.wait("0.2.0 back online", lambda: [r for r in rig.of("register") if r.get("fw") == "0.2.0"][1:], 60)
    assert rig.alive()
