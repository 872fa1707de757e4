"""The terminal end to end: firmware from .mpy under the unix port, meter and modem simulators, a real mosquitto.

One rig for the module; the tests run in order and share its history, as a
terminal in the field would: report, answer, refuse, lose its link, lose power.
"""

import hashlib
import hmac
import json
import math
import sys
import threading
import time
import uuid

import paho.mqtt.client as paho
import pytest

from harness import LOOPBACK, ROOT, Mosquitto, Proc
from tools.sim.meter import MeterBus, MeterSpec
from tools.sim.modem import ModemSim

pytestmark = pytest.mark.system

ADDR = "000072007201"
IMEI = "861234567890123"
KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
HOME = (40.8425, 111.7490, 1065.0)
PREFIX = "bdmeter/%s/" % IMEI


def distance_m(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(a))


class Rig:
    def __init__(self, tmp):
        self.dir = tmp
        self.broker = Mosquitto(log_dir=tmp)
        self.bus = MeterBus([MeterSpec(address=ADDR, base_kw=30.0)], baud=9600, seed=3, latency_ms=(5, 20),
                            speedup=60.0)
        self.meter_port = self.bus.start()
        self.modem = ModemSim(imei=IMEI, position=HOME, noise_m=3.0, cold_start_s=2.0, fake_fix_s=1.0,
                              delay_scale=0.05, seed=3)
        self.modem_port = self.modem.start()
        self.cfg_path = tmp / "config.json"
        self.cfg_path.write_text(json.dumps({
            "board": "unix", "meter_uart": "%s:%d" % (LOOPBACK, self.meter_port),
            "modem_uart": "%s:%d" % (LOOPBACK, self.modem_port), "broker_host": LOOPBACK,
            "broker_port": self.broker.port, "cmd_key": KEY, "meters": [ADDR], "meter_baud": 9600,
            "poll_s": 2, "heartbeat_s": 2, "gnss_s": 1, "link_backoff_max_s": 4, "keepalive_s": 10,
            "state_dir": str(tmp / "flash"),
        }))
        self.msgs = []  # (time, topic leaf, payload dict or bytes, retain)
        self.lock = threading.Lock()
        self.obs = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="checker")
        self.obs.on_message = self._on_message
        self.obs.connect(LOOPBACK, self.broker.port)
        self.obs.subscribe("bdmeter/#", qos=1)
        self.obs.loop_start()
        self.fw = None
        self.start_firmware()

    def _on_message(self, client, userdata, m):
        try:
            body = json.loads(m.payload)
        except ValueError:
            body = m.payload
        with self.lock:
            self.msgs.append((time.monotonic(), m.topic.rpartition("/")[2], body, m.retain))

    def start_firmware(self):
        self.fw = Proc([sys.executable, "-m", "tools.mpunix", ROOT / "build/mpy/main.py", self.cfg_path],
                       "firmware", log_dir=self.dir)

    def of(self, leaf, since=0.0):
        with self.lock:
            return [b for t, lf, b, _ in self.msgs if lf == leaf and t >= since]

    def wait(self, what, pred, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            if self.fw.p.poll() is not None:
                raise AssertionError("firmware exited (%s) while waiting for %s:\n%s"
                                     % (self.fw.p.returncode, what, self.fw.output()[-4000:]))
            time.sleep(0.2)
        raise AssertionError("timed out waiting for %s; firmware log:\n%s" % (what, self.fw.output()[-4000:]))

    def command(self, op, args=None, ts=None, nonce=None, key=KEY, body=None, mac=None):
        rid = "t-" + uuid.uuid4().hex[:8]
        if body is None:
            body = json.dumps({"id": rid, "op": op, "args": args or {}, "ts": int(ts or time.time()),
                               "nonce": nonce or uuid.uuid4().hex}, separators=(",", ":"))
        signed = b"bdmeter-cmd-v1\n" + IMEI.encode() + b"\n" + body.encode()
        mac = mac or hmac.new(bytes.fromhex(key), signed, hashlib.sha256).hexdigest()
        self.obs.publish(PREFIX + "cmd", json.dumps({"body": body, "mac": mac}), qos=1)
        return rid, body

    def answer(self, rid, timeout=30.0):
        return self.wait("resp %s" % rid, lambda: next((r for r in self.of("resp") if r.get("id") == rid), None),
                         timeout)

    def record_seqs(self):
        with self.lock:
            return [b["seq"] for _, lf, b, _ in self.msgs if lf in ("energy", "event", "register")]

    def close(self):
        if self.fw:
            self.fw.stop()
        self.obs.loop_stop()
        self.obs.disconnect()
        self.bus.stop()
        self.modem.stop()
        self.broker.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("terminal"))
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
    assert reg["meters"] == [ADDR] and reg["imei"] == IMEI and reg["v"] == 1
    assert distance_m(reg["pos"]["lat"], reg["pos"]["lon"], HOME[0], HOME[1]) < 30, reg["pos"]
    served = _served_fwd(rig)
    for e in energy:
        assert e["meter"] == ADDR and e["tsrc"] in ("gnss", "net", "rtc")
        assert round(e["kwh"]["fwd"], 2) in served, (e["kwh"], sorted(served)[-5:])
        tariffs = sum(e["kwh"]["t%d" % i] for i in range(1, 5))
        assert abs(tariffs - e["kwh"]["fwd"]) < 0.05
    hb = rig.of("heartbeat")[-1]
    assert hb["outbox"] >= 0 and hb["up"] >= 0 and "ladder" in hb["err"]


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
    rid, _ = rig.command("status")
    assert rig.answer(rid)["result"]["err"]["cmd_refused"] >= 5


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


def test_power_cut_loses_nothing_in_the_outbox(rig):
    rig.modem.set_fault("hang", True)
    before = len(rig.bus.served)
    rig.wait("readings into the outbox", lambda: len(rig.bus.served) >= before + 3 * 3, 60)
    rig.fw.kill()  # SIGKILL to the firmware's process group: no goodbye, a power cut
    highest = max(rig.record_seqs())
    rig.modem.set_fault("hang", False)
    rig.start_firmware()
    rig.wait("records from after the restart",
             lambda: any(e.get("kind") == "reboot" and e["seq"] > highest for e in rig.of("event")), 120)
    rig.wait("the newest readings", lambda: max(rig.record_seqs()) > highest + 3, 60)
    seqs = rig.record_seqs()
    assert _contiguous(seqs), sorted(set(seqs))
    assert _first_seen_in_order(seqs)
