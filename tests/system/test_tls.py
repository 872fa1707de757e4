"""TLS to the broker done by the modem: the firmware under the unix port, the modem simulator's real TLS, mosquitto's
TLS listener with accounts (tools/pki.py certificates, tools/procs.Mosquitto).

The simulated module's clock starts five years off after every restart: the terminal must set it from its trusted
time before a handshake that checks the certificate's dates. A wrong CA on the terminal's flash fails every
handshake with the module's 566: counted (`tls_fail`), logged with the broker and the cause, retried at the socket
only (no CFUN, no PDP deactivation, no power cycle); the right CA put on flash is uploaded and the link comes up.
"""

import shutil

import pytest

from tools.pki import make_pki
from tools.procs import Mosquitto
from tools.rig import TerminalRig, broker_dir

pytestmark = pytest.mark.system

IMEI = "861234567890123"
TERMINAL_PASS = "t3rminal-Pa55"
HEADEND_PASS = "h3adend-Pa55"
MODULE_ACTIONS = ("+CFUN", "+QIDEACT", "+QPOWD", "+QGPSEND")
CLOCK_ERROR_S = -5 * 365 * 86400


def _rig(workdir, ca_file, mutual=False):
    pki = make_pki(workdir / "pki", clients=(IMEI,))
    broker = Mosquitto(log_dir=broker_dir(), pki=pki, accounts={IMEI: TERMINAL_PASS, "headend": HEADEND_PASS},
                       require_certificate=mutual)
    cfg = {"broker_port": broker.tls_port, "broker_tls": True, "tls_ca": str(workdir / "ca.pem"),
           "broker_user": IMEI, "broker_pass": TERMINAL_PASS, "server_backoff_max_s": 3, "link_backoff_s": 1}
    if mutual:
        cfg["tls_cert"], cfg["tls_key"] = (str(p) for p in pki.client(IMEI))
    shutil.copy(getattr(pki, ca_file), workdir / "ca.pem")
    r = TerminalRig(workdir, imei=IMEI, broker=broker, start=False, cfg=cfg)
    r.own_broker = True
    r.broker_dir = broker.dir
    r.obs.username_pw_set("headend", HEADEND_PASS)  # no anonymous access: the checker is the head-end
    r.obs.reconnect()
    r.modem.clock_error_s = CLOCK_ERROR_S  # the module's clock after each restart
    r.start_firmware()
    return r, pki


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r, pki = _rig(tmp_path_factory.mktemp("tls"), "ca")
    yield r
    r.close()


def test_online_over_tls_readings_and_an_answered_query(rig):
    rig.wait("online with readings", lambda: len(rig.of("energy")) >= 2, 120)
    rid, _ = rig.command("query", {"what": ["address"]})
    ans = rig.answer(rid, 30)
    assert ans["ok"], ans
    ok = [t for t in rig.modem.tls_log if t["err"] == 0]
    assert ok and ok[0]["version"] == "TLSv1.2" and ok[0]["port"] == rig.broker.tls_port
    assert ok[0]["hs_up"] > 0 and ok[0]["hs_down"] > 0
    assert rig.modem.stats["tcp_bytes_up"] > 0
    events = rig.wait("the tls_files event", lambda: [e for e in rig.of("event") if e.get("kind") == "tls_files"])
    assert events[0]["data"] == {"uploaded": ["ca.pem"]}
    assert rig.modem.file("ca.pem") == (rig.dir / "ca.pem").read_bytes()
    log = [line for _, line in rig.modem.log]
    opened = next(i for i, line in enumerate(log) if line.startswith("AT+QSSLOPEN"))
    assert any(line.startswith("AT+CCLK=") for line in log[:opened])  # the clock before the first handshake
    assert '"ignorelocaltime",1,0' in " ".join(log[:opened]) and '"sni",1,1' in " ".join(log[:opened])
    fw = rig.fw.output()
    assert TERMINAL_PASS not in fw and "BEGIN CERTIFICATE" not in fw


def test_module_restart_sets_context_and_clock_again(rig):
    rig.wait("online", lambda: rig.of("heartbeat"), 60)
    opens = len([t for t in rig.modem.tls_log if t["err"] == 0])
    n = len(rig.of("energy"))
    rig.modem.set_fault("reboot")
    rig.wait("TLS again after the restart", lambda: len([t for t in rig.modem.tls_log if t["err"] == 0]) > opens, 60)
    rig.wait("readings after the restart", lambda: len(rig.of("energy")) > n + 1, 60)
    log = [line for _, line in rig.modem.log]
    rdy = max(i for i, line in enumerate(log) if line == "<RDY>")
    assert any(line.startswith("AT+CCLK=") for line in log[rdy:])
    assert any(line.startswith('AT+QSSLCFG="seclevel",1,1') for line in log[rdy:])
    assert not any(line.startswith("AT+QFUPL") for line in log[rdy:])  # the module's flash kept the CA
    assert not [t for t in rig.modem.tls_log if t["err"]]


def test_mutual_tls_with_the_terminal_certificate(tmp_path):
    r, pki = _rig(tmp_path, "ca", mutual=True)
    try:
        r.wait("online with readings", lambda: len(r.of("energy")) >= 1, 120)
        events = r.wait("the tls_files event", lambda: [e for e in r.of("event") if e.get("kind") == "tls_files"])
        assert events[0]["data"] == {"uploaded": ["ca.pem", "client.pem", "client.key"]}
        assert any(line.startswith('AT+QSSLCFG="seclevel",1,2') for _, line in r.modem.log)
        fw = r.fw.output()
        assert "PRIVATE KEY" not in fw and TERMINAL_PASS not in fw
    finally:
        r.close()


def test_wrong_ca_is_counted_and_logged_without_climbing_the_ladder(tmp_path):
    r, pki = _rig(tmp_path, "other_ca")
    try:
        fw = r.wait("three failed handshakes", lambda: r.fw.output().count("TLS to broker") >= 3 and r.fw.output(),
                    90)
        assert "TLS to broker 127.0.0.1:%d failed (3 so far)" % r.broker.tls_port in fw
        assert "TLS handshake failed (certificate not accepted" in fw
        assert all(t["err"] == 566 and "certificate verify failed" in t["failure"] for t in r.modem.tls_log)
        assert not any(r.modem.seen.get(k) for k in MODULE_ACTIONS), r.modem.seen
        assert r.modem.stats["reboots"] == 1 and r.modem.state()["pdp"] == "active"
        assert "rung pdp" not in fw and "rung cfun" not in fw and "rung power" not in fw
        assert TERMINAL_PASS not in fw and "BEGIN CERTIFICATE" not in fw
        shutil.copy(pki.ca, tmp_path / "ca.pem")  # the right CA on the terminal's flash
        r.wait("online with the right CA", lambda: r.of("heartbeat"), 60)
        events = r.wait("two tls_files events", lambda: len([e for e in r.of("event") if e.get("kind") == "tls_files"])
                        >= 2 and [e for e in r.of("event") if e.get("kind") == "tls_files"])
        assert [e["data"]["uploaded"] for e in events] == [["ca.pem"], ["ca.pem"]]  # changed: uploaded again
        full = r.wait("a heartbeat counting tls_fail", lambda: [h for h in r.of("heartbeat")
                                                                 if h.get("err", {}).get("tls_fail", 0) >= 3], 60)
        err = full[-1]["err"]
        assert err["server_fail"] >= err["tls_fail"]
        assert not any(err.get("ladder", {}).get(k) for k in ("pdp", "cfun", "power", "mcu")), err
    finally:
        r.close()
