"""config.set in the field: intervals take effect at once, a failed save is answered and changes nothing,
values out of range are refused."""

import json
import time

import pytest

from tools.rig import TerminalRig

pytestmark = pytest.mark.system

IMEI = "861234567890126"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = TerminalRig(tmp_path_factory.mktemp("config-set"), imei=IMEI)
    r.wait("online", lambda: r.of("register"), 90)
    yield r
    r.close()


def _events(rig, kind):
    return [e for e in rig.of("event") if isinstance(e, dict) and e.get("kind") == kind]


def test_config_set_interval_applies_at_once(rig):
    # regression: sleeps read the interval once: a mistaken poll_s of an hour silenced readings for an hour
    rid, _ = rig.command("config.set", {"set": {"poll_s": 3600}})
    assert rig.answer(rid)["ok"] is True
    time.sleep(4)  # the meter task is now in its hour-long sleep
    n = len(rig.of("energy"))
    rid, _ = rig.command("config.set", {"set": {"poll_s": 2}})
    assert rig.answer(rid)["ok"] is True
    rig.wait("readings again within seconds", lambda: len(rig.of("energy")) >= n + 2, 20)


def test_failed_save_is_answered_and_changes_nothing(rig):
    # regression: a failed save answered ok and emitted config_changed; the change vanished at reboot
    changed = len(_events(rig, "config_changed"))
    tmp = rig.cfg_path.parent / (rig.cfg_path.name + ".tmp")
    tmp.mkdir()  # the temp file cannot be created: the save fails (even for root)
    try:
        rid, _ = rig.command("config.set", {"set": {"heartbeat_s": 7}})
        resp = rig.answer(rid)
        assert resp["ok"] is False and resp["error"] == "save_failed", resp
        rid, _ = rig.command("config.get", {"keys": ["heartbeat_s"]})
        assert rig.answer(rid)["result"]["config"] == {"heartbeat_s": 2}
    finally:
        tmp.rmdir()
    time.sleep(1)
    assert len(_events(rig, "config_changed")) == changed
    assert json.loads(rig.cfg_path.read_text()).get("heartbeat_s") == 2


def test_out_of_range_values_refused(rig):
    # regression: relocation_m=1e308, hdop_max=1e-300 and duplicate inst items were accepted
    for change in ({"relocation_m": 1e308}, {"hdop_max": 1e-300}, {"inst": ["v", "v"]}, {"min_sats": 0}):
        rid, _ = rig.command("config.set", {"set": change})
        assert rig.answer(rid)["error"] == "bad_args", change
    rid, _ = rig.command("config.get", {"keys": ["relocation_m", "hdop_max", "inst"]})
    assert rig.answer(rid)["result"]["config"] == {"relocation_m": 200, "hdop_max": 5.0, "inst": []}
