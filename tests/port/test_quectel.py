"""lib/quectel under the unix port against tools/sim/modem: bring-up, TCP echo, GNSS, and every fault recovered.

The simulator runs in-process (background thread) with small delays; the
socket is bridged to a real TCP echo server on loopback started here.
"""

import datetime
import json
import socket
import threading

import pynmea2
import pytest

from harness import LOOPBACK, ROOT, run_micropython
from tools.sim.modem import ModemSim
from tools.sim.modem_gnss import checksum

pytestmark = pytest.mark.port

POSITION = (40.8425, 111.7490, 1065.0)
SEND_RETRIES = 4  # the driver's default


class EchoServer:
    """Threaded TCP echo server on loopback."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind((LOOPBACK, 0))
        self.srv.listen(8)
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.conns = []
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, c):
        c.settimeout(0.2)
        while not self._stop.is_set():
            try:
                d = c.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not d:
                return
            c.sendall(d)

    def stop(self):
        self._stop.set()
        self.srv.close()
        for c in self.conns:
            c.close()
        for t in self.threads:
            t.join(5)


def make_rig(**kw):
    sim = ModemSim(position=POSITION, noise_m=3.0, cold_start_s=0.5, fake_fix_s=0.3, delay_scale=0.05, seed=5, **kw)
    port = sim.start(control_port=0)
    return sim, port, EchoServer()


@pytest.fixture
def rig():
    sim, port, echo = r = make_rig()
    yield r
    echo.stop()
    sim.stop()


def run(rig, scenario, pin="reset", timeout=45):
    sim, port, echo = rig
    rc, out = run_micropython(ROOT / "tests/port/mp/modem_check.py", port, sim.control_port, echo.port, scenario,
                              pin, timeout=timeout)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert rc == 0 and events and events[-1]["ev"] == "done", out
    return events


def ev(events, name):
    found = [e for e in events if e["ev"] == name]
    assert found, "no %r event in %r" % (name, events)
    return found[-1]


def test_bringup_echo_and_gnss(rig):
    sim = rig[0]
    events = run(rig, "bringup")
    assert ev(events, "up")["ready"]
    info = ev(events, "info")
    assert info["imei"] == sim.imei and info["iccid"] == sim.iccid and info["signal"] == sim.csq
    net = datetime.datetime(*info["time"], tzinfo=datetime.timezone.utc)
    assert abs((net - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 120
    sizes = ev(events, "echoed")["sizes"]
    assert sizes == [5, 3000, 1460, 1]
    done = ev(events, "done")
    st = done["stats"]
    # every byte went through the module both ways, and the driver counted the same
    assert sim.stats["tcp_bytes_up"] == sim.stats["tcp_bytes_down"] == sum(sizes) == st["bytes_tx"] == st["bytes_rx"]
    assert st["timeouts"] == 0 and st["garbage"] == 0 and done["ladder"]["fixed_by"] is None
    assert ev(events, "closed")["closed"]

    g = ev(events, "gnss")
    assert g["fixed"], g
    sentences = g["sentences"] + g["more"]
    for s in sentences:
        body, _, cs = s[1:].partition("*")
        assert checksum(body) == cs, s
        pynmea2.parse(s, check=True)
    ggas = [pynmea2.parse(s) for s in g["sentences"] if s[3:6] == "GGA"]
    assert ggas[0].gps_qual == 0  # cold start: no fix yet
    last = ggas[-1]
    assert last.gps_qual >= 1 and 6 <= int(last.num_sats) <= 14 and 0.6 <= float(last.horizontal_dil) <= 1.8
    assert abs(last.latitude - POSITION[0]) < 0.001 and abs(last.longitude - POSITION[1]) < 0.001
    talkers = {s[1:3] for s in g["sentences"]}
    assert talkers == {"GN", "GB"}
    loc = g["loc"]
    assert loc["fix"] >= 2 and loc["nsat"] >= 6 and abs(loc["lat"] - POSITION[0]) < 0.001
    assert any(s[3:6] == "GSV" for s in g["more"]) and any(s[3:6] == "GSA" for s in g["more"])


# fault -> (the rung that fixed it, or None when no recovery was needed; ladder counts expected)
EXPECT = {
    "peer_close": ("socket", {"socket": 1, "pdp": 0, "cfun": 0, "power": 0}),
    "pdpdeact": ("pdp", {"socket": 0, "pdp": 1, "cfun": 0, "power": 0}),
    "stack_degraded": ("cfun", {"socket": 1, "pdp": 1, "cfun": 1, "power": 0}),
    "reboot": ("socket", {"socket": 1, "pdp": 0, "cfun": 0, "power": 0}),
    "hang": ("power", {"socket": 1, "pdp": 0, "cfun": 0, "power": 1}),  # then nothing answers, not even AT: power
    "send_fail": ("socket", {"socket": 1, "pdp": 0, "cfun": 0, "power": 0}),
    "garbage": (None, {"socket": 0, "pdp": 0, "cfun": 0, "power": 0}),
    "urc_mid_response": (None, {"socket": 0, "pdp": 0, "cfun": 0, "power": 0}),
    "antenna": (None, {"socket": 0, "pdp": 0, "cfun": 0, "power": 0}),
}


@pytest.mark.parametrize("fault", sorted(EXPECT))
def test_fault_recovered(rig, fault):
    sim = rig[0]
    events = run(rig, fault)
    done = ev(events, "done")
    ladder, st = done["ladder"], done["stats"]
    print("%s: ladder %s; rungs climbed %s" % (fault, ladder, [e["name"] for e in events if e["ev"] == "rung"]))
    fixed_by, counts = EXPECT[fault]
    assert ev(events, "usable") and done["ready"]
    assert ladder["fixed_by"] == fixed_by
    assert {k: ladder[k] for k in counts} == counts
    assert ladder["mcu"] == 0
    assert any(e["ev"] == "survived" for e in events) == (fixed_by is None)
    if fault == "reboot":
        assert st["reinit"] == 1 and st["rdy_unexpected"] == 1 and st["echo"] >= 1
    elif fault == "pdpdeact":
        assert st["pdp_lost"] == 1
    elif fault == "hang":
        assert st["power_cycles"] == 1 and st["timeouts"] >= 2 and sim.stats["dropped"] >= 2
    elif fault == "send_fail":
        assert st["send_fail"] == SEND_RETRIES + 2 == sim.stats["send_fail"]
    elif fault == "garbage":
        assert st["garbage"] >= 150
    elif fault == "urc_mid_response":
        assert ev(events, "usable")["signal"] == sim.csq and sim.stats["urc_mid_response"] == 3
    elif fault == "antenna":
        u = ev(events, "usable")
        assert u["loc"] is None
        gga = [pynmea2.parse(s) for s in u["nmea"] if s[3:6] == "GGA"]
        assert gga and gga[0].gps_qual == 0 and int(gga[0].num_sats) == 0
    elif fault == "stack_degraded":
        assert st["open_fail"] == 2


def test_pwrkey_powers_on_a_silent_module_and_power_cycles_a_hung_one():
    sim, port, echo = r = make_rig(boot_on_connect=False)  # the module starts switched off
    try:
        events = run(r, "hang", pin="pwrkey")
    finally:
        echo.stop()
        sim.stop()
    up = ev(events, "up")
    assert up["ready"] and up["powered"]["state"]["powered"]
    done = ev(events, "done")
    print("pwrkey: ladder %s" % done["ladder"])
    assert done["ladder"]["fixed_by"] == "power" and done["stats"]["power_cycles"] == 1
    assert sim.stats["reboots"] == 2  # one PWRKEY power-on at start, one power cycle


def test_gnss_nmea_source_enabled_on_507():
    sim, port, echo = r = make_rig(nmeasrc_required=True)  # EC2x: no NMEA through AT until nmeasrc is on
    try:
        events = run(r, "gnss")
    finally:
        echo.stop()
        sim.stop()
    g = ev(events, "gnss")
    assert g["fixed"] and g["sentences"]
    assert sim.seen["+QGPSCFG"] == 2  # gnssconfig, then nmeasrc after the first 507
    assert ev(events, "done")["stats"]["errors"] >= 1


def _dead_port():
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens: connections are refused
    return port


def _run_extra(r, scenario, apn="cmnet", extra=0, timeout=60):
    sim, port, echo = r
    rc, out = run_micropython(ROOT / "tests/port/mp/modem_check.py", port, sim.control_port, echo.port, scenario,
                              "reset", apn, extra, timeout=timeout)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert rc == 0 and events and events[-1]["ev"] == "done", out
    return events, out


def test_server_down_with_a_healthy_network_stays_at_the_socket(rig):
    sim = rig[0]
    dead = _dead_port()
    events, out = _run_extra(rig, "server_down", extra=dead)
    fails = [e for e in events if e["ev"] == "failed"]
    assert len(fails) == 4 and all(e["cls"] == "server" for e in fails), fails
    # the log names the peer and a human cause next to the module's code
    assert fails[0]["error"] == "broker 127.0.0.1:%d: connection refused or peer unreachable (module error 566)" % dead
    assert [e["name"] for e in events if e["ev"] == "rung"] == ["socket"] * 4
    done = ev(events, "done")
    assert {k: done["ladder"][k] for k in ("pdp", "cfun", "power", "mcu")} == {"pdp": 0, "cfun": 0, "power": 0,
                                                                              "mcu": 0}
    assert done["stats"]["server_fail"] == 4 and done["stats"]["power_cycles"] == 0
    for cmd in ("+QIDEACT", "+CFUN", "+QGPSEND", "+QPOWD"):
        assert sim.seen.get(cmd, 0) == 0, (cmd, sim.seen)
    assert sim.stats["reboots"] == 1  # only the power-on
    assert "s3cret-apn-pw" not in out


def test_module_restart_is_brought_up_by_one_owner_in_order_on_a_private_apn():
    sim, port, echo = r = make_rig(apn_required="private.apn", nmeasrc_required=True)
    try:
        events, out = _run_extra(r, "rdy_race", apn="private.apn")
    finally:
        echo.stop()
        sim.stop()
    print("rdy race:", [e for e in events if e["ev"] in ("rung", "usable", "poller", "attempt_failed")])
    assert ev(events, "usable") and ev(events, "done")["ready"]
    assert ev(events, "poller")["ok"] > 0
    log = [line for _, line in sim.log]
    boots = [i for i, line in enumerate(log) if line == "<RDY>"]
    assert len(boots) == 2, log  # power-on and the unsolicited restart: no power cycle was needed
    after = log[boots[1]:]
    acts = [i for i, line in enumerate(after) if line.upper().startswith("AT+QIACT=")]
    assert acts, after
    first = acts[0]
    # every volatile setting again, before activation: echo, CMEE, the private APN, the NMEA source
    for needed in ("ATE0", "AT+CMEE=1", 'AT+QICSGP=1,1,"private.apn"', 'AT+QGPSCFG="nmeasrc",1'):
        assert any(line.startswith(needed) for line in after[:first]), (needed, after[:first + 1])
    # one owner: from the re-initialisation's first command to activation nobody else talks to the module
    start = after.index("ATE0")
    assert not [line for line in after[start:first] if line.startswith("AT+QGPSGNMEA")], after[start:first + 1]
    # activation only once registered, never refused, never undone under a socket
    assert any(line == "AT+CEREG?" for line in after[:first])
    assert sim.stats["qiact_refused"] == 0, after
    assert not any(line.upper().startswith("AT+QIDEACT") for line in after), after
    assert "s3cret-apn-pw" not in out


def test_an_open_whose_context_vanishes_fails_at_once_when_the_module_stays_silent():
    sim = ModemSim(position=POSITION, cold_start_s=0.5, fake_fix_s=0.3, delay_scale=0.5, seed=5,
                   silent_open_on_deact=True)
    port = sim.start(control_port=0)
    echo = EchoServer()
    try:
        events, _ = _run_extra((sim, port, echo), "open_lost", extra=echo.port, timeout=90)
    finally:
        echo.stop()
        sim.stop()
    f = ev(events, "open_failed")
    print("open lost:", f)
    assert f["ms"] < 2000 and f["cls"] == "network", f  # not the 10 s QIOPEN limit


class _FakeAT:
    unanswered = 0


class _FakeModem:
    """Just what quectel_ladder.recover touches; every rung only records itself."""

    def __init__(self, answers_at=True):
        self.at = _FakeAT()
        self.answers_at = answers_at
        self.ladder = {"socket": 0, "pdp": 0, "cfun": 0, "power": 0, "mcu": 0, "fixed_by": None}
        self._stats = {"recoveries": 0, "server_fail": 0, "power_cycles": 0}
        self._attempts = self._server_attempts = self._rung = 0
        self._pdp, self._up, self._need_reinit = True, True, False
        self.server_backoff_max_ms = 50
        self.on_mcu_reset = lambda: self.actions.append("mcu")
        self.actions = []

    def backoff_ms(self, attempt, cap_ms=None):
        return 1

    async def _probe(self):
        return self.answers_at

    async def _ensure(self):
        pass

    async def _exclusive(self, fn, *args):
        self.actions.append(fn.__name__)

    def _info(self, *a):
        pass

    _warn = _info


def _climb(m, cause, n):
    import asyncio

    import quectel_ladder

    async def go():
        return [await quectel_ladder.recover(m, cause) for _ in range(n)]

    return asyncio.run(go())


def test_failure_classes_lead_to_their_rungs(monkeypatch):
    import quectel_ladder

    async def power_cycle(m):
        m.actions.append("power_cycle")

    monkeypatch.setattr(quectel_ladder, "power_cycle", power_cycle)
    m = _FakeModem()
    assert _climb(m, "server", 6) == ["socket"] * 6 and m.actions == [] and m._stats["server_fail"] == 6
    m = _FakeModem()
    assert _climb(m, "network", 5) == ["pdp", "cfun", "cfun", "cfun", "cfun"]  # never the power or mcu rung
    assert "power_cycle" not in m.actions and "mcu" not in m.actions
    m = _FakeModem(answers_at=False)
    assert _climb(m, "module", 1) == ["power"] and m.actions == ["power_cycle"]
    m = _FakeModem()
    assert _climb(m, None, 5) == ["socket", "pdp", "cfun", "power", "mcu"]
