"""Config in the field: a file with a typo still brings the terminal online, every problem is reported (log,
counters, event), secrets are never shown."""

import json

import pytest

from tools.rig import TerminalRig

pytestmark = pytest.mark.system

IMEI = "861234567890124"
KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
BAD_BROKER_PASS = 'br0ker"s3cret-pass'  # a quote is not allowed: falls back to the default
APN_PASS = "apn-s3cret-pw1"  # valid: it goes to the modem in AT+QICSGP, which the debug log traces


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    # a typo (pol_s) and a bad value (gnss_s 0) next to everything that matters: broker, cmd_key
    r = TerminalRig(tmp_path_factory.mktemp("config"), imei=IMEI, key=KEY,
                    cfg={"pol_s": 5, "gnss_s": 0, "broker_user": "u", "broker_pass": BAD_BROKER_PASS,
                         "apn": "cmnet", "apn_user": "u", "apn_pass": APN_PASS, "log_level": "debug"})
    yield r
    r.close()


def _events(rig, kind):
    return [e for e in rig.of("event") if isinstance(e, dict) and e.get("kind") == kind]


def test_a_typo_does_not_cost_the_rest_of_the_file(rig):
    # regression: the whole file was refused: broker 127.0.0.1:1883 and no cmd_key, never online
    rig.wait("online with the file's broker", lambda: rig.of("register"), 90)
    rid, _ = rig.command("config.get", {"keys": ["poll_s", "gnss_s"]})
    assert rig.answer(rid)["result"]["config"] == {"poll_s": 2, "gnss_s": 60}  # the file's cmd_key works
    ev = rig.wait("the config_problems event", lambda: _events(rig, "config_problems"))
    assert ev[0]["data"] == {"unknown": ["pol_s"], "bad": ["broker_pass", "gnss_s"]}
    full = rig.wait("a full heartbeat with the counters",
                    lambda: [h for h in rig.of("heartbeat") if "err" in h and "config_unknown" in h["err"]])
    assert full[0]["err"]["config_unknown"] == 1 and full[0]["err"]["config_bad"] == 2
    log = rig.fw.output()
    assert "pol_s" in log and "did you mean poll_s" in log and "broker_pass" in log
    assert len(_events(rig, "config_problems")) == 1


def test_secrets_never_shown(rig):
    with rig.lock:
        everything = json.dumps([m[2] if isinstance(m[2], dict) else repr(m[2]) for m in rig.msgs])
    log = rig.fw.output()
    assert 'AT+QICSGP=1,1,"cmnet","u","***"' in log  # the debug trace of the command that carries one
    for secret in (KEY, KEY[:16], BAD_BROKER_PASS, APN_PASS, "s3cret"):
        assert secret not in log, secret
        assert secret not in everything, secret
