"""Head-end against a real mosquitto on loopback: bad input, duplicates, silence, shared workers, query, CLI."""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from harness import ROOT, Mosquitto, Proc, wait_for
from tools.headend import Store, cli, synth
from tools.headend.pgstore import open_store
from tools.headend.service import Headend

KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"


@pytest.fixture(scope="module")
def broker():
    m = Mosquitto()
    yield m
    m.stop()


class Publisher:
    """A synthetic terminal side: a paho client that publishes and waits for each PUBACK."""

    def __init__(self, port):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub-%s" % os.urandom(3).hex())
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()

    def pub(self, topic, payload, qos=1, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=5)
        assert info.is_published()

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def headend(broker, tmp_path, backend):
    started = []

    def start(**kw):
        kw.setdefault("db", backend.target(tmp_path / "fleet.db"))
        h = Headend("127.0.0.1:%d" % broker.port, **kw).start(timeout_s=10)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()
        h.store.close()


@pytest.fixture
def publisher(broker):
    p = Publisher(broker.port)
    yield p
    p.close()


def test_invalid_payloads_are_counted_not_fatal(headend, publisher):
    h = headend()
    t = "bdmeter/861234567890201/"
    bad = [(t + "energy", b"{oops"), (t + "energy", b'{"v":1,"seq":1,"ts":1,"tsrc":"gnss"}'),
           (t + "energy", b'{"v":1,"seq":"1","ts":1,"tsrc":"gnss","meter":"000072007201","kwh":{}}'),
           (t + "heartbeat", b'{"v":1,"ts":"now","tsrc":"gnss","up":1}'),
           (t + "energy/extra", synth.energy(1, 1, "000072007201", 1.0)),
           (t + "telemetry", b"{}"), ("bdmeter/bad%id/energy", b"{}")]
    for topic, payload in bad:
        publisher.pub(topic, payload)
    publisher.pub(t + "energy", synth.energy(1, 1795478400, "000072007201", 12.5))
    wait_for(lambda: h.store.count("readings") == 1, what="the valid reading stored")
    wait_for(lambda: h.store.counters().get("invalid") == len(bad), what="every bad message counted")
    assert h.errors == 0 and h.received == len(bad) + 1
    publisher.pub(t + "energy", synth.energy(2, 1795478460, "000072007201", 12.6))
    wait_for(lambda: h.store.count("readings") == 2, what="ingest still running")


def test_duplicates_through_the_broker_are_stored_once(headend, publisher):
    h = headend()
    t = "bdmeter/861234567890202/energy"
    for seq in range(1, 41):
        p = synth.energy(seq, 1795478400 + 60 * seq, "000072007202", 100 + seq * 0.5)
        publisher.pub(t, p)
        publisher.pub(t, p)  # the terminal lost our PUBACK and sent it again
    wait_for(lambda: sum(h.store.counters().get(k, 0) for k in ("stored", "duplicate")) == 80, what="80 handled")
    assert h.store.count("readings") == 40
    assert h.store.counters()["duplicate"] == 40
    seqs = [r["seq"] for r in h.store.query("SELECT seq FROM readings ORDER BY seq")]
    assert seqs == list(range(1, 41))


def test_a_state_wipe_through_the_broker_keeps_both_incarnations(headend, publisher):
    h = headend()
    t = "bdmeter/861234567890206/"
    meter = "000072007206"
    # the outbox before the wipe: incarnation 0badcafe, seq 1..30, the last ten sent twice (PUBACK lost)
    publisher.pub(t + "register", synth.register(1, 1795478400, [meter], 40.8, 111.7, inc="0badcafe"))
    for seq in range(2, 31):
        p = synth.energy(seq, 1795478400 + 60 * seq, meter, 100 + seq * 0.5, inc="0badcafe")
        publisher.pub(t + "energy", p)
        if seq > 20:
            publisher.pub(t + "energy", p)
    # flash erased: a new incarnation starts at seq 1 again, with other readings under the same seqs
    publisher.pub(t + "register", synth.register(1, 1795488400, [meter], 40.9, 111.8, inc="5eed0001"))
    for seq in range(2, 21):
        publisher.pub(t + "energy", synth.energy(seq, 1795488400 + 60 * seq, meter, 500 + seq * 0.5, inc="5eed0001"))
    # and a version 1 message of an old terminal next to them
    publisher.pub(t + "event", synth.event(7, 1795489999, "reboot", {"cause": "power"}))
    wait_for(lambda: sum(h.store.counters().get(k, 0) for k in ("stored", "duplicate", "conflict")) == 61,
             what="61 handled")
    c = h.store.counters()
    assert (c["stored"], c["duplicate"], c.get("conflict", 0), c.get("invalid", 0)) == (51, 10, 0, 0)
    assert h.store.count("readings") == 29 + 19 and h.store.count("registrations") == 2
    got = {i["inc"]: (i["records"], i["last_seq"], i["missing"]) for i in h.store.incarnations()}
    assert got == {"0badcafe": (30, 30, 0), "5eed0001": (20, 20, 0), "": (1, 7, 6)}
    row = h.store.fleet()[0]
    assert row["energy"][meter]["fwd"] == 510.0 and (row["lat"], row["lon"]) == (40.9, 111.8)


def test_silent_before_the_will_then_offline(broker, headend):
    h = headend(check_s=0.05)
    tid = "861234567890203"
    status = "bdmeter/%s/status" % tid
    term = synth.RawTerminal(broker.port, "term-" + tid, status, b'{"v":1,"state":"offline"}', keepalive_s=60)
    try:
        term.publish(status, synth.status_online(1795478400), retain=True)
        for i in range(4):
            term.publish("bdmeter/%s/heartbeat" % tid, synth.heartbeat(1795478400 + i, i))
            time.sleep(0.2)
        wait_for(lambda: h.store.count("heartbeats") == 4, what="4 heartbeats")
        interval = h.store.fleet()[0]["hb_interval_s"]
        assert 0.1 < interval < 0.5
        # the link is still up (keepalive 60 s): only the missing heartbeats can tell
        row = lambda: h.store.query("SELECT state, status_state FROM terminals")[0]  # noqa: E731
        wait_for(lambda: row()["state"] == "silent", timeout=5, what="silent flagged by the head-end")
        assert row()["status_state"] == "online" and h.store.fleet()[0]["state"] == "silent"
    finally:
        term.drop()
    wait_for(lambda: h.store.fleet()[0]["state"] == "offline", timeout=5, what="offline from the will")
    assert h.store.transitions(tid) == [("online", "status"), ("silent", "heartbeat_overdue"), ("offline", "will")]
    Publisher(broker.port).pub(status, b"", retain=True)  # clear the retained will for later tests


def test_shared_subscription_splits_the_load(headend, publisher, tmp_path, backend):
    db = backend.target(tmp_path / "shared.db")
    a, b = headend(db=db, share="workers"), headend(db=db, share="workers")
    for k in range(5):
        t = "bdmeter/86123456789030%d/energy" % k
        for seq in range(1, 31):
            publisher.pub(t, synth.energy(seq, 1795478400 + seq, "0000720073%02d" % k, float(seq)))
    wait_for(lambda: a.received + b.received == 150, what="150 delivered")
    assert a.received > 0 and b.received > 0
    reader = open_store(db)
    wait_for(lambda: reader.count("readings") == 150, what="150 stored once")
    reader.close()
    assert a.errors == b.errors == 0


class FakeTerminal:
    """Answers signed commands like the firmware: verifies the MAC over the documented canonical form."""

    def __init__(self, port, tid, key_hex):
        self.tid, self.key = tid, bytes.fromhex(key_hex)
        self.seen = []
        self.config = {"poll_s": 900, "heartbeat_s": 300, "inst": []}
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fake-" + tid)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe("bdmeter/%s/cmd" % tid, qos=1)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.c.on_message = self._on_cmd
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        assert self.ready.wait(5)

    def _on_cmd(self, client, userdata, msg):
        env = json.loads(msg.payload)
        canon = b"bdmeter-cmd-v1\n" + self.tid.encode() + b"\n" + env["body"].encode()
        ok = hmac.compare_digest(hmac.new(self.key, canon, hashlib.sha256).hexdigest(), env["mac"])
        body = json.loads(env["body"])
        self.seen.append(body)
        answer = {"v": 1, "id": body["id"], "ok": ok, "ts": int(time.time()), "tsrc": "gnss"}
        if not ok:
            answer["error"] = "bad_mac"
        elif body["op"] == "config.get":
            answer["result"] = {"config": {k: self.config[k] for k in body["args"]["keys"] or self.config}}
        elif body["op"] == "config.set":
            self.config.update(body["args"]["set"])
            answer["result"] = {"config": dict(body["args"]["set"])}
        elif body["op"] == "query":
            answer["result"] = {"address": ["000072007201"],
                                "position": {"lat": 40.84, "lon": 111.75, "alt": 1050.0, "hdop": 0.9, "nsat": 9,
                                             "n": 20, "fix": True},
                                "energy": {"000072007201": {"ts": int(time.time()), "tsrc": "gnss",
                                                            "kwh": {"fwd": 1234.56}}}}
        else:
            answer["result"] = {}
        client.publish("bdmeter/%s/resp" % self.tid, json.dumps(answer, separators=(",", ":")), qos=1)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_query_round_trip(broker, tmp_path, capsys, backend):
    tid = "861234567890204"
    db = backend.target(tmp_path / "q.db")
    term = FakeTerminal(broker.port, tid, KEY)
    url = "127.0.0.1:%d" % broker.port
    try:
        assert cli.main(["key", "--db", db, "--create", tid, KEY]) == 0
        capsys.readouterr()
        rc = cli.main(["query", "--broker", url, "--db", db, "--timeout", "10", tid,
                       "address", "position", "energy"])
        resp = json.loads(capsys.readouterr().out)
        assert rc == 0 and resp["ok"] is True
        assert resp["result"]["address"] == ["000072007201"] and resp["result"]["position"]["fix"] is True
        sent = term.seen[-1]
        assert sent["op"] == "query" and sent["args"] == {"what": ["address", "position", "energy"]}
        assert abs(sent["ts"] - time.time()) < 30 and sent["id"] == resp["id"]
        assert open_store(db).response(tid, resp["id"])["ok"] == 1
        # a wrong key: the terminal refuses and the command exits 1
        rc = cli.main(["query", "--broker", url, "--key", "ff" * 32, "--timeout", "10", tid, "read"])
        assert rc == 1 and json.loads(capsys.readouterr().out)["error"] == "bad_mac"
        # settings: config.set with JSON values, then config.get of one key and of all
        rc = cli.main(["query", "--broker", url, "--db", db, "--timeout", "10", tid, "config.set", "poll_s=60",
                       'inst=["v","i"]'])
        assert rc == 0 and json.loads(capsys.readouterr().out)["result"]["config"] == {"poll_s": 60,
                                                                                        "inst": ["v", "i"]}
        assert term.seen[-1]["op"] == "config.set"
        assert cli.main(["query", "--broker", url, "--db", db, "--timeout", "10", tid, "config.get", "poll_s"]) == 0
        assert json.loads(capsys.readouterr().out)["result"]["config"] == {"poll_s": 60}
        assert term.seen[-1]["args"] == {"keys": ["poll_s"]}
        assert cli.main(["query", "--broker", url, "--db", db, "--timeout", "10", tid, "config.get"]) == 0
        assert json.loads(capsys.readouterr().out)["result"]["config"]["heartbeat_s"] == 300
    finally:
        term.close()
    # nobody answers: a bounded wait, exit 2
    t0 = time.monotonic()
    assert cli.main(["query", "--broker", url, "--key", KEY, "--timeout", "1", tid, "status"]) == 2
    assert time.monotonic() - t0 < 5
    assert "no answer" in capsys.readouterr().err


def test_run_and_status_as_commands(broker, tmp_path, publisher):
    db = tmp_path / "cli.db"
    proc = Proc([sys.executable, "-m", "tools.headend", "run", "--broker", "127.0.0.1:%d" % broker.port,
                 "--db", db, "--heartbeat-s", "30"], "headend", log_dir=tmp_path)
    try:
        proc.wait_output("subscribed to bdmeter/+/#", timeout=15)
        t = "bdmeter/861234567890205/"
        publisher.pub(t + "status", synth.status_online(1795478400))
        publisher.pub(t + "register", synth.register(1, 1795478400, ["000072007205"], 40.8312, 111.7321,
                                                     imei="861234567890205"))
        publisher.pub(t + "energy", synth.energy(2, 1795478410, "000072007205", 321.09))
        wait_for(lambda: db.exists() and Store(db).count("readings") == 1, what="stored by the process")
    finally:
        rc = proc.stop(timeout=30)  # generous: a loaded machine can take a while to join the threads
    assert rc == 0, proc.output()
    out = subprocess.run([sys.executable, "-m", "tools.headend", "status", "--db", str(db)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30).stdout
    line = next(x for x in out.splitlines() if x.startswith("861234567890205"))
    for cell in ("000072007205", "40.83120,111.73210", "321.09", "online"):
        assert cell in line
