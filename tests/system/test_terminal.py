"""The terminal end to end: firmware from .mpy under the unix port, meter and modem simulators, a real mosquitto.

One rig for the module; the tests run in order and share its history, as a
terminal in the field would: report, answer, refuse, lose its link, lose power.
"""

import json
import math
import time

import paho.mqtt.client as paho
import pytest

from harness import LOOPBACK
from tools.rig import TerminalRig

pytestmark = pytest.mark.system

ADDR = "000072007201"
IMEI = "861234567890123"
KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
HOME = (40.8425, 111.7490, 1065.0)
PREFIX = "bdmeter/%s/" % IMEI
SECRET_PASS = "s3cret-Pa55-w0rd"


def distance_m(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(a))


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = TerminalRig(tmp_path_factory.mktemp("terminal"), imei=IMEI, address=ADDR, home=HOME, key=KEY,
                    cfg={"broker_user": "bdmeter", "broker_pass": SECRET_PASS})
    yield r
    r.close()


def _served_fwd(rig):
    """Every forward-active total the meter simulator actually put on the wire (single or block DI)."""
    out = set()
    for s in list(rig.bus.served):
        if s["address"] == ADDR and s["di"] == "00010000":
            out.add(round(s["value"], 2))
        elif s["address"] == ADDR and s["di"] == "0001FF00":
            out.add(round(s["value"][0], 2))
    return out


def test_reports_status_register_energy_heartbeat(rig):
    rig.wait("a register with a position", lambda: [r for r in rig.of("register") if r.get("pos")], 90)
    energy = rig.wait("two energy readings", lambda: len(rig.of("energy")) >= 2 and rig.of("energy"))
    rig.wait("a heartbeat", lambda: rig.of("heartbeat"))
    # retained status, as a newly connecting server sees it
    late = []
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="late")
    c.on_message = lambda cl, ud, m: late.append((json.loads(m.payload), m.retain))
    c.connect(LOOPBACK, rig.broker.port)
    c.subscribe(PREFIX + "status", qos=1)
    c.loop_start()
    try:
        rig.wait("retained status", lambda: late)
    finally:
        c.loop_stop()
        c.disconnect()
    assert late[0][0]["state"] == "online" and late[0][1] is True

    reg = [r for r in rig.of("register") if r.get("pos")][0]
    assert reg["meters"] == [ADDR] and reg["imei"] == IMEI and reg["v"] == 2 and len(reg["inc"]) == 8
    assert distance_m(reg["pos"]["lat"], reg["pos"]["lon"], HOME[0], HOME[1]) < 30, reg["pos"]
    served = _served_fwd(rig)
    for e in energy:
        assert e["meter"] == ADDR and e["tsrc"] in ("gnss", "net", "rtc")
        assert round(e["kwh"]["fwd"], 2) in served, (e["kwh"], sorted(served)[-5:])
        tariffs = sum(e["kwh"]["t%d" % i] for i in range(1, 5))
        assert abs(tariffs - e["kwh"]["fwd"]) < 0.05
    beats = rig.of("heartbeat")
    assert all(b["outbox"] >= 0 and b["up"] >= 0 and "csq" in b for b in beats)
    full = [b for b in beats if "err" in b]
    assert full and full[0]["reset"] == "power" and full[0]["heap"] > 0
    assert all(isinstance(v, int) and v > 0 for k, v in full[-1]["err"].items() if k != "ladder")


def test_queries_for_address_position_energy(rig):
    rid, _ = rig.command("query", {"what": ["address", "position", "energy"]})
    resp = rig.answer(rid)
    assert resp["ok"] is True, resp
    res = resp["result"]
    assert res["address"] == [ADDR]
    assert distance_m(res["position"]["lat"], res["position"]["lon"], HOME[0], HOME[1]) < 30
    assert round(res["energy"][ADDR]["kwh"]["fwd"], 2) in _served_fwd(rig)
    for what in ("address", "position", "energy"):
        rid, _ = rig.command("query", {"what": [what]})
        assert list(rig.answer(rid)["result"]) == [what]


def test_forged_stale_replayed_commands_refused_and_not_executed(rig):
    rid, _ = rig.command("config.set", {"set": {"relocation_m": 999}}, mac="0" * 64)
    assert rig.answer(rid)["error"] == "bad_mac"
    rid, _ = rig.command("config.set", {"set": {"relocation_m": 999}}, key="ff" * 32)
    assert rig.answer(rid)["error"] == "bad_mac"
    rid, _ = rig.command("config.set", {"set": {"relocation_m": 999}}, ts=time.time() - 3600)
    assert rig.answer(rid)["error"] == "stale"
    rid, body = rig.command("config.set", {"set": {"relocation_m": 250}})
    assert rig.answer(rid)["ok"] is True
    n = len([r for r in rig.of("resp") if r.get("id") == rid])
    rig.command(None, body=body)  # the same signed bytes again
    rig.wait("replay refusal", lambda: len([r for r in rig.of("resp") if r.get("id") == rid]) > n)
    assert [r for r in rig.of("resp") if r.get("id") == rid][-1]["error"] == "replay"
    rid, _ = rig.command("config.set", {"set": {"cmd_key": "11" * 32}})
    assert rig.answer(rid)["error"] == "forbidden_key"
    rid, _ = rig.command("config.get", {"keys": ["relocation_m"]})
    assert rig.answer(rid)["result"]["config"] == {"relocation_m": 250}
    rid, _ = rig.command("selfdestruct")
    assert rig.answer(rid)["error"] == "unknown_op"
    rid, _ = rig.command("config.get", {"keys": ["cmd_key"]})
    assert rig.answer(rid)["error"] == "forbidden_key"
    n = len(rig.of("resp"))
    rig.command("query", {"what": ["address"], "pad": "x" * 1200})  # refused unread: its answer has id null
    rig.wait("too_large", lambda: [r for r in rig.of("resp")[n:] if r.get("error") == "too_large"])
    rid, _ = rig.command("status")
    assert rig.answer(rid)["result"]["err"]["cmd_refused"] >= 8


def test_no_secret_in_logs_or_payloads(rig):
    rid, _ = rig.command("config.get", {"keys": []})
    shown = rig.answer(rid)["result"]["config"]
    assert "cmd_key" not in shown and "broker_pass" not in shown and shown["poll_s"] == 2
    with rig.lock:
        everything = json.dumps([m[2] if isinstance(m[2], dict) else repr(m[2]) for m in rig.msgs])
    for secret in (KEY, SECRET_PASS):
        assert secret not in everything
        assert secret not in rig.fw.output()


def _contiguous(seqs):
    return sorted(set(seqs)) == list(range(1, max(seqs) + 1))


def _first_seen_in_order(seqs):
    seen, order = set(), []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            order.append(s)
    return order == sorted(order)


def test_link_loss_delivers_every_reading_in_order(rig):
    before = len(rig.bus.served)
    rig.modem.set_fault("hang", True)  # the module stops answering: uplink stalls, readings go on
    rig.wait("readings during the outage", lambda: len(rig.bus.served) >= before + 8 * 3, 60)
    taken = len(rig.of("energy"))
    rig.modem.set_fault("hang", False)
    rig.wait("backlog delivered", lambda: len(rig.of("energy")) >= taken + 4, 120)
    seqs = rig.record_seqs()
    assert _contiguous(seqs), sorted(set(seqs))
    assert _first_seen_in_order(seqs)


def test_reboot_command_restarts_and_the_reboot_event_says_why(rig):
    highest = max(rig.record_seqs())
    rid, _ = rig.command("reboot")
    assert rig.answer(rid)["result"] == {"rebooting": True}
    rig.wait("the reboot event", lambda: [e for e in rig.of("event") if e.get("kind") == "reboot" and
                                          e["seq"] > highest], 60)
    boot = [e for e in rig.of("event") if e.get("kind") == "reboot" and e["seq"] > highest][0]
    assert boot["data"] == {"cause": "soft", "why": "command"}, boot
    rig.wait("readings again", lambda: max(rig.record_seqs()) > boot["seq"] + 1, 60)
    assert _contiguous(rig.record_seqs())


def test_a_wedged_module_is_reset_through_its_reset_line(rig):
    reboots, highest = rig.modem.stats["reboots"], max(rig.record_seqs())
    rig.modem.set_fault("hang", True)  # never cleared here: only a pulse on the module's reset line ends it
    rig.wait("records taken after the module was reset",
             lambda: max(rig.record_seqs()) > highest + 3 and rig.modem.stats["reboots"] > reboots, 120)
    rig.wait("a heartbeat counting the power rung",
             lambda: [h for h in rig.of("heartbeat") if h.get("err", {}).get("ladder", {}).get("power")], 60)
    assert _contiguous(rig.record_seqs())


def test_power_cut_loses_nothing_in_the_outbox(rig):
    rig.modem.set_fault("hang", True)
    before = len(rig.bus.served)
    rig.wait("readings into the outbox", lambda: len(rig.bus.served) >= before + 3 * 3, 60)
    rig.power_cut()
    highest = max(rig.record_seqs())
    rig.modem.set_fault("hang", False)
    rig.start_firmware()
    rig.wait("records from after the restart",
             lambda: any(e.get("kind") == "reboot" and e["seq"] > highest for e in rig.of("event")), 120)
    rig.wait("the newest readings", lambda: max(rig.record_seqs()) > highest + 3, 60)
    seqs = rig.record_seqs()
    assert _contiguous(seqs), sorted(set(seqs))
    assert _first_seen_in_order(seqs)
