"""A signed update of a running terminal end to end, and a new version that crashes at import rolling back.

The terminal runs from a copy of build/mpy (its own flash); the bundles are packed and signed with
tools/release; the rig answers the terminal's `upd` requests from the bundle on `updc`.
"""

import json
import shutil

import pytest

from harness import ROOT
from tools import release
from tools.headend import cli
from tools.rig import TerminalRig
from tools.release import rehearsal_tree as versioned_tree

pytestmark = pytest.mark.system

IMEI = "861234567890124"
# A release whose link code is broken: every task alive, but it never reaches the server.
OFFLINE_UPLINK = """
import asyncio


class Uplink:
    def __init__(self, t):
        self.t = t
        self.session = None
        self.connects = self.reconnects = self.published = self.tls_fail = 0
        self.connected = False
        self.wake = asyncio.Event()

    async def publish(self, leaf, text, qos=1, retain=False):
        return False

    async def run(self):
        while True:
            self.t.checkin("uplink")
            await asyncio.sleep(1)
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("update")
    key = d / "release.key"
    pub = release.keygen(key)
    bundles = {}
    crash = {"app": 'raise RuntimeError("boom at import")\n'}
    for ver, over in (("0.2.0", None), ("0.3.0", crash), ("0.4.0", {"uplink": OFFLINE_UPLINK}),
                      ("0.5.0", None)):
        tree = versioned_tree(d / ("tree-" + ver), ver, over)
        release.pack(key, tree, d / ("bundle-" + ver), ver)
        bundles[ver] = release.Bundle(d / ("bundle-" + ver))
        bundles[ver].path = d / ("bundle-" + ver)
    flash = d / "flash-code"
    shutil.copytree(ROOT / "build" / "mpy", flash)
    rig = TerminalRig(d / "rig", imei=IMEI, code=flash,
                      cfg={"update_pubkey": pub, "update_confirm_s": 30, "poll_s": 5, "heartbeat_s": 3})
    yield rig, bundles, flash
    rig.close()


def _update_events(rig, state):
    return [e["data"] for e in rig.of("event") if e.get("kind") == "update" and e["data"].get("state") == state]


def test_update_downloads_switches_and_confirms(setup, capsys):
    rig, bundles, flash = setup
    rig.wait("a register", lambda: rig.of("register"), 90)
    assert rig.of("register")[-1]["fw"] == "0.1.0"
    # the head-end offers the bundle, serves its chunks and follows the terminal to the outcome
    rc = cli.main(["update", "--broker", "127.0.0.1:%d" % rig.broker.port, "--key", rig.key,
                   "--bundle", str(bundles["0.2.0"].path), "--timeout", "150", IMEI])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "%s: staged" % IMEI in out and "0.2.0: 1 of 1 confirmed" in out
    staged = _update_events(rig, "staged")
    assert staged[0]["slot"] == "a"
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
    rig, bundles, flash = setup
    before = (flash / "slots.json").read_text()
    old = dict(bundles["0.2.0"].offer(), ver="0.1.0")
    rid, _ = rig.command("update", old)
    assert rig.answer(rid)["error"] == "downgrade_refused"
    rid, _ = rig.command("update", bundles["0.2.0"].offer())
    assert rig.answer(rid)["error"] == "same_version"
    # a bundle whose signature does not match (here: another release's) is fetched, checked and refused
    rig.bundle = bundles["0.3.0"]
    forged = dict(bundles["0.3.0"].offer(), sig=bundles["0.2.0"].sig)
    rid, _ = rig.command("update", forged)
    assert rig.answer(rid)["ok"]
    failed = rig.wait("bad signature refused", lambda: _update_events(rig, "failed"), 60)
    assert failed[0] == {"state": "failed", "ver": "0.3.0", "why": "bad_signature"}
    assert (flash / "slots.json").read_text() == before and not (flash / "app_b").exists()


def test_new_version_crashing_at_import_rolls_back_and_reports(setup):
    rig, bundles, flash = setup
    rig.bundle = bundles["0.3.0"]
    rid, _ = rig.command("update", bundles["0.3.0"].offer())
    assert rig.answer(rid)["ok"]
    rig.wait("0.3.0 staged", lambda: [e for e in _update_events(rig, "staged") if e["ver"] == "0.3.0"], 120)
    back = rig.wait("rollback reported", lambda: _update_events(rig, "rolled_back"), 90)
    assert back[0]["ver"] == "0.3.0" and back[0]["running"] == "0.2.0" and "boom at import" in back[0]["why"]
    st = json.loads((flash / "slots.json").read_text())
    assert st["confirmed"] == "a" and st["last"]["result"] == "rolled_back"
    rig.wait("0.2.0 back online", lambda: [r for r in rig.of("register") if r.get("fw") == "0.2.0"][1:], 60)
    assert rig.alive()


def test_new_version_that_never_gets_online_rolls_back(setup):
    rig, bundles, flash = setup
    rig.bundle = bundles["0.4.0"]
    rid, _ = rig.command("update", bundles["0.4.0"].offer())
    assert rig.answer(rid)["ok"]
    rig.wait("0.4.0 staged", lambda: [e for e in _update_events(rig, "staged") if e["ver"] == "0.4.0"], 120)
    back = rig.wait("rollback reported", lambda: [e for e in _update_events(rig, "rolled_back")
                                                  if e["ver"] == "0.4.0"], 120)
    assert back[0]["running"] == "0.2.0" and back[0]["why"] == "not confirmed in 30 s"
    assert json.loads((flash / "slots.json").read_text())["confirmed"] == "a"


def test_download_resumes_after_link_loss_and_power_cut(setup):
    rig, bundles, flash = setup
    b = bundles["0.5.0"]
    rig.bundle = b
    start = rig.chunks_served
    rid, _ = rig.command("update", b.offer())
    assert rig.answer(rid)["ok"]
    rig.wait("20 chunks", lambda: rig.chunks_served - start >= 20, 60)
    rig.modem.set_fault("peer_close")  # the server side drops the connection mid-download
    rig.wait("40 chunks after the link came back", lambda: rig.chunks_served - start >= 40, 60)
    rig.power_cut()
    cut_at = rig.chunks_served - start
    rig.start_firmware()  # power back: the download carries on from what reached flash, unasked
    staged = rig.wait("0.5.0 staged", lambda: [e for e in _update_events(rig, "staged") if e["ver"] == "0.5.0"], 120)
    assert staged
    resumed = [e for e in _update_events(rig, "downloading") if e["ver"] == "0.5.0" and e["done"]]
    assert resumed and resumed[0]["done"] > 0  # the first progress after the cut starts part-way
    rig.wait("0.5.0 confirmed", lambda: [e for e in _update_events(rig, "confirmed") if e["ver"] == "0.5.0"], 90)
    total = rig.chunks_served - start
    chunks_needed = sum((size + 1023) // 1024 for _, size, _ in b.entries) + (len(b.manifest) + 1023) // 1024
    assert cut_at >= 40 and total < chunks_needed + 45, (cut_at, total, chunks_needed)
    assert json.loads((flash / "slots.json").read_text())["ver"] == "0.5.0"
