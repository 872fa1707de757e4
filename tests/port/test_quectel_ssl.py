"""lib/quectel_ssl and lib/quectel_files under the unix port against the modem simulator's real TLS (tools/pki).

The simulator runs in-process (background thread) with small delays; its SSL sockets run real TLS handshakes with a
TLS echo server on loopback started here, using the files the driver uploaded to the simulated module.
"""

import json

import pytest

from harness import ROOT, run_micropython
from tools.pki import make_pki
from tools.sim.modem import ModemSim
from tools.sim.tls_peer import TlsEcho

pytestmark = pytest.mark.port
TID = "860000000000001"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), clients=(TID,))


def run(pki, scenario, ca=None, mutual=False):
    sim = ModemSim(delay_scale=0.05, cold_start_s=0.5, fake_fix_s=0.3, seed=5, clock_error_s=-5 * 365 * 86400)
    sim.start(control_port=0)
    srv = TlsEcho(pki.server_cert, pki.server_key, ca=pki.ca if mutual else None, require_client=mutual)
    args = [sim.port, sim.control_port, srv.port, ca or pki.ca, scenario]
    if mutual:
        args += list(pki.client(TID))
    try:
        rc, out = run_micropython(ROOT / "tests/port/mp/modem_tls.py", *args, timeout=60)
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert rc == 0 and events and events[-1]["ev"] == "done", out
        return sim, srv, events
    finally:
        srv.stop()
        sim.stop()


def ev(events, name, every=False):
    found = [e for e in events if e["ev"] == name]
    assert found, "no %r event in %r" % (name, events)
    return found if every else found[-1]


@pytest.mark.parametrize("mutual", [False, True], ids=["server_only", "mutual"])
def test_files_uploaded_once_tls_echo_restart_and_peer_close(pki, mutual):
    sim, srv, events = run(pki, "echo", mutual=mutual)
    assert all(e["uploaded"] for e in ev(events, "file", True))
    assert not any(e["uploaded"] for e in ev(events, "file_again", True))  # known and the same: not sent again
    changed = ev(events, "file_changed")
    assert changed["uploaded"] and changed["size_same"]  # same size, other content: replaced
    assert ev(events, "file_restored")["uploaded"]
    assert sim.file("ca.pem") == pki.ca.read_bytes()
    assert ev(events, "open")["tls"] and ev(events, "echo")["ok"]
    assert ev(events, "lost")["closed"] and ev(events, "reopen")["ok"]
    closed = ev(events, "peer_closed")
    assert closed["closed"] and closed["peer"] and ev(events, "released")["stale"] == []
    oks = [t for t in sim.tls_log if t["err"] == 0]
    assert len(oks) == 2 and all(t["version"] == "TLSv1.2" for t in oks)
    assert srv.wait_handshakes(2)
    assert srv.sni == [None, None]  # an IP address is never sent as a server name
    if mutual:
        assert srv.peers == [TID, TID]
    # the SSL context and the module's clock were set again after the restart, before the second open
    log = [line for _, line in sim.log]
    rdy = max(i for i, line in enumerate(log) if line == "<RDY>")
    after = log[rdy:]
    first_open = next(i for i, line in enumerate(after) if line.startswith("AT+QSSLOPEN"))
    assert any(line.startswith('AT+QSSLCFG="seclevel",1,%d' % (2 if mutual else 1)) for line in after[:first_open])
    assert any(line.startswith("AT+CCLK=") for line in after[:first_open])
    assert '"ignorelocaltime",1,0' in " ".join(after[:first_open])
    assert not any(e.startswith('AT+QFUPL') and "client" in e for e in after)  # flash files survived


def test_wrong_ca_is_a_server_failure_without_module_action(pki):
    sim, srv, events = run(pki, "wrong_ca", ca=pki.other_ca)
    fails = ev(events, "open_failed", True)
    assert len(fails) == 2
    for f in fails:
        assert f["cls"] == "server" and f["code"] == 566
        assert f["error"].startswith("broker 127.0.0.1:%d: TLS handshake failed" % srv.port), f
    assert [e["name"] for e in ev(events, "rung", True)] == ["socket", "socket"]
    done = ev(events, "done")
    assert done["ladder"]["pdp"] == done["ladder"]["cfun"] == done["ladder"]["power"] == 0
    assert done["stats"]["server_fail"] == 2
    assert not any(line.startswith(("AT+CFUN", "AT+QIDEACT")) for _, line in sim.log)
    assert all("certificate verify failed" in t["failure"] for t in sim.tls_log)
