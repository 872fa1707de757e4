"""The link end to end: a server outage with a healthy network, and unsolicited module restarts on a private APN.

Firmware from .mpy under the unix port, the meter and modem simulators, a real mosquitto (tools/rig.py). The
modem simulator stands for a private-APN SIM: it activates data only on the configured APN and forgets the
context settings whenever the module restarts.
"""

import statistics
import time

import pytest

from tools.rig import TerminalRig

pytestmark = pytest.mark.system

APN = "private.apn"
APN_PASS = "apn-Pa55-s3cret"
SERVER_BACKOFF_MAX_S = 20
OUTAGE_S = 150
RESTARTS = 3  # `make soak` runs 20 (tools/soak.py, restarts phase)
MODULE_ACTIONS = ("+CFUN", "+QIDEACT", "+QGPSEND", "+QPOWD")


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = TerminalRig(tmp_path_factory.mktemp("link"), start=False,
                    cfg={"apn": APN, "apn_user": "meter", "apn_pass": APN_PASS,
                         "server_backoff_max_s": SERVER_BACKOFF_MAX_S})
    r.modem.apn_required = APN
    r.start_firmware()
    yield r
    r.close()


def _contiguous(seqs):
    return bool(seqs) and sorted(set(seqs)) == list(range(1, max(seqs) + 1))


def _online_since(rig, t0):
    with rig.lock:
        return [t for t, leaf, b, _ in rig.msgs if t >= t0 and leaf == "status" and isinstance(b, dict)
                and b.get("state") == "online"]


def _broker_down(broker):
    broker.proc.stop(timeout=10)  # SIGINT: it saves its state first, as in maintenance


def _broker_up(broker):
    broker.__init__(log_dir=broker.dir, port=broker.port, persistent=broker.persistent)


def test_broker_down_for_minutes_with_a_healthy_network_touches_nothing_in_the_module(rig):
    rig.wait("online with readings", lambda: len(rig.of("energy")) >= 2, 120)
    seen0 = {k: rig.modem.seen.get(k, 0) for k in MODULE_ACTIONS}
    reboots0 = rig.modem.stats["reboots"]
    served0 = len(rig.bus.served)
    _broker_down(rig.broker)
    t_down = time.monotonic()
    try:
        time.sleep(OUTAGE_S)
        assert rig.alive(), rig.fw.output()[-3000:]
        assert len(rig.bus.served) > served0 + 20  # the meter is still read: the outbox fills meanwhile
    finally:
        _broker_up(rig.broker)
    t_back = time.monotonic()
    got = rig.wait("online again", lambda: _online_since(rig, t_back), SERVER_BACKOFF_MAX_S + 30)
    back_s = got[0] - t_back
    print("broker down %.0f s; back online %.1f s after the broker returned" % (t_back - t_down, back_s))
    # within one backoff step (the cap, with jitter below it) of the broker's return, plus a connect
    assert back_s <= SERVER_BACKOFF_MAX_S + 10, back_s
    # nothing lost: every record numbered meanwhile arrives
    rig.wait("every record delivered", lambda: rig.of("heartbeat") and rig.of("heartbeat")[-1]["outbox"] == 0
             and _contiguous(rig.record_seqs()), 120)
    # the module was left alone: no CFUN, no QIDEACT, no GNSS stop, no power cycle, no MCU reset
    assert {k: rig.modem.seen.get(k, 0) for k in MODULE_ACTIONS} == seen0, rig.modem.seen
    assert rig.modem.stats["reboots"] == reboots0
    assert rig.modem.state()["gnss_on"] and rig.modem.state()["pdp"] == "active"
    full = rig.wait("a full heartbeat counting server failures",
                    lambda: [h for h in rig.of("heartbeat") if h.get("err", {}).get("server_fail")], 60)[-1]
    ladder = full["err"].get("ladder", {})
    assert not any(ladder.get(k) for k in ("pdp", "cfun", "power", "mcu")), ladder
    assert not [e for e in rig.of("event") if e.get("kind") == "reboot" and e["seq"] > 1]
    log = rig.fw.output()
    assert "reset requested" not in log
    assert "broker 127.0.0.1:%d: connection refused or peer unreachable (module error 566)" % rig.broker.port in log
    assert APN_PASS not in log


def test_unsolicited_module_restarts_on_a_private_apn(rig):
    rig.wait("online", lambda: rig.of("heartbeat"), 60)
    times = []
    for i in range(RESTARTS):
        before = max(rig.record_seqs())
        refused0 = rig.modem.stats["qiact_refused"]
        t0 = time.monotonic()
        rig.modem.set_fault("reboot")
        got = rig.wait("online after restart %d" % (i + 1), lambda t=t0: _online_since(rig, t), 60)
        times.append(got[0] - t0)
        rig.wait("records after restart %d" % (i + 1), lambda b=before: max(rig.record_seqs()) > b + 1, 60)
        assert rig.modem.stats["qiact_refused"] == refused0  # never activated before its APN was set again
        time.sleep(2)
    print("module restarts: back online after %s s (median %.1f, max %.1f)"
          % ([round(t, 1) for t in times], statistics.median(times), max(times)))
    assert max(times) < 60
    rig.wait("every record delivered", lambda: rig.of("heartbeat") and rig.of("heartbeat")[-1]["outbox"] == 0
             and _contiguous(rig.record_seqs()), 120)
    log = rig.fw.output()
    assert log.count("modem restarted by itself") >= RESTARTS
    assert APN_PASS not in log
