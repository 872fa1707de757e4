"""A valid but wrong config (an unreachable broker): after config_fallback_s without server contact the terminal
goes back to the config that last reached the server, says so, and stays there."""

import json

import pytest

from harness import free_port
from tools.rig import TerminalRig

pytestmark = pytest.mark.system

IMEI = "861234567890125"


@pytest.fixture
def rig(tmp_path):
    r = TerminalRig(tmp_path, imei=IMEI, cfg={"config_fallback_s": 10})
    yield r
    r.close()


def _events(rig, kind):
    return [e for e in rig.of("event") if isinstance(e, dict) and e.get("kind") == kind]


def test_falls_back_to_the_config_that_last_reached_the_server(rig):
    # regression: a wrong broker in a new config file kept the terminal away from the server for good
    rig.wait("online", lambda: rig.of("register"), 90)
    known = rig.cfg_path.parent / (rig.cfg_path.name + ".known")
    rig.wait("the known good copy", lambda: known.exists(), 10)
    assert json.loads(known.read_text())["broker_port"] == rig.broker.port
    rig.fw.stop()
    cfg = json.loads(rig.cfg_path.read_text())
    cfg["broker_port"] = free_port()  # nothing listens there
    rig.cfg_path.write_text(json.dumps(cfg))
    highest = max(rig.record_seqs())
    rig.start_firmware()
    ev = rig.wait("the config_fallback event", lambda: [e for e in _events(rig, "config_fallback")
                                                       if e["seq"] > highest], 120)
    assert ev[0]["data"]["silent_s"] >= 10
    boot = rig.wait("the reboot it caused", lambda: [e for e in _events(rig, "reboot")
                                                   if e["seq"] > ev[0]["seq"]], 30)
    assert boot[0]["data"].get("why") == "config fallback", boot
    log = rig.fw.output()
    assert "running on the known good copy" in log
    assert len(_events(rig, "config_fallback")) == 1
    assert json.loads(rig.cfg_path.read_text())["broker_port"] == cfg["broker_port"]  # the file is left as it is
