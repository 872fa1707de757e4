"""The secured broker (tools/procs.Mosquitto with TLS, accounts and ACL) against forged records, id takeover,
eavesdropping and oversize messages: real mosquitto on loopback, paho clients and the real head-end ingest."""

import os
import select
import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from harness import wait_for

from tools.headend import synth
from tools.headend.mqttconn import Broker
from tools.headend.service import Headend
from tools.pki import make_pki
from tools.procs import LOOPBACK, Mosquitto

A, B = "860000000000011", "860000000000012"
PASSWORDS = {"headend": "he-Secret-7b1c", A: "pw-A-Secret-41d9", B: "pw-B-Secret-8e02"}
LIMIT = 8192


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), clients=(A, B))


@pytest.fixture(scope="module")
def broker(pki, tmp_path_factory):
    m = Mosquitto(log_dir=tmp_path_factory.mktemp("mqtt"), pki=pki, accounts=PASSWORDS, max_packet_size=LIMIT)
    yield m
    m.stop()


class Client:
    """A paho client that records its connection results, disconnects and messages."""

    def __init__(self, port, user=None, password=None, cafile=None, client_id=None, will=None):
        self.results, self.disconnects, self.messages = [], 0, []
        self.connected, self.subscribed = threading.Event(), threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "t-%s" % os.urandom(3).hex())
        if user is not None:
            self.c.username_pw_set(user, password)
        if cafile is not None:
            self.c.tls_set(ca_certs=str(cafile))
        if will:
            self.c.will_set(*will)
        self.c.reconnect_delay_set(min_delay=1, max_delay=2)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.c.on_message = lambda c, u, msg: self.messages.append((msg.topic, msg.payload))
        self.c.connect_async(LOOPBACK, port, keepalive=30)
        self.c.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.results.append(str(reason_code))
        if not reason_code.is_failure:
            self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        self.disconnects += 1

    def wait_connected(self, timeout=10):
        assert self.connected.wait(timeout), "not connected: %s" % self.results

    def refused(self, timeout=10):
        wait_for(lambda: self.results, timeout, "an answer to CONNECT")
        return self.results[0]

    def subscribe(self, *topics):
        self.subscribed.clear()
        self.c.subscribe([(t, 1) for t in topics])
        assert self.subscribed.wait(5)

    def publish(self, topic, payload, qos=1):
        info = self.c.publish(topic, payload, qos=qos)
        if qos:
            info.wait_for_publish(timeout=5)
        return info

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def clients():
    made = []

    def make(*args, **kw):
        c = Client(*args, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def terminal(clients, broker, pki, tid, **kw):
    c = clients(broker.tls_port, tid, PASSWORDS[tid], pki.ca, **kw)
    c.wait_connected()
    return c


def test_a_terminal_cannot_publish_under_another_terminals_id(broker, pki, clients, tmp_path):
    h = Headend(Broker("127.0.0.1:%d" % broker.service_port, "headend", PASSWORDS["headend"], pki.ca),
                db=str(tmp_path / "fleet.db")).start(timeout_s=10)
    try:
        a, b = terminal(clients, broker, pki, A), terminal(clients, broker, pki, B)
        b.publish("bdmeter/%s/energy" % A, synth.energy(1, 1795478400, "000072007211", 99999.0))  # forged
        a.publish("bdmeter/%s/energy" % A, synth.energy(2, 1795478460, "000072007211", 12.5))
        wait_for(lambda: h.store.count("readings") == 1, what="the terminal's own reading stored")
        time.sleep(0.5)
        rows = h.store.query("SELECT tid, seq FROM readings")
        assert [(r["tid"], r["seq"]) for r in rows] == [(A, 2)] and h.received == 1
    finally:
        h.stop()
        h.store.close()


def test_a_terminal_cannot_read_another_terminals_commands_or_chunks(broker, pki, clients):
    a, b = terminal(clients, broker, pki, A), terminal(clients, broker, pki, B)
    a.subscribe("bdmeter/%s/cmd" % B, "bdmeter/%s/updc" % B, "bdmeter/+/cmd", "bdmeter/#")
    b.subscribe("bdmeter/%s/cmd" % B, "bdmeter/%s/updc" % B)
    he = clients(broker.service_port, "headend", PASSWORDS["headend"], pki.ca)
    he.wait_connected()
    he.publish("bdmeter/%s/cmd" % B, b'{"body":"for B"}')
    he.publish("bdmeter/%s/updc" % B, b"chunk for B")
    wait_for(lambda: len(b.messages) == 2, what="B receiving its own command and chunk")
    time.sleep(0.5)
    assert a.messages == []


def test_a_terminal_cannot_take_another_terminals_client_id(broker, pki, clients):
    """The attacker, with its own valid account and the victim's id, connects three times: the victim is never
    kicked (its id is its username) and its retained status never turns offline."""
    victim = terminal(clients, broker, pki, A, will=("bdmeter/%s/status" % A, b'{"online":false}', 1, True))
    watcher = clients(broker.service_port, "headend", PASSWORDS["headend"], pki.ca)
    watcher.wait_connected()
    watcher.subscribe("bdmeter/%s/status" % A)
    for _ in range(3):
        thief = clients(broker.tls_port, B, PASSWORDS[B], pki.ca, client_id=A)
        thief.wait_connected()
        thief_plain = clients(broker.port, B, PASSWORDS[B], client_id=A)
        thief_plain.wait_connected()
        anonymous = clients(broker.tls_port, cafile=pki.ca, client_id=A)
        assert anonymous.refused() != "Success"
        anonymous.close()
        time.sleep(0.5)
        thief.close()
        thief_plain.close()
    time.sleep(1.0)  # a kicked victim would have seen on_disconnect within this window
    assert victim.disconnects == 0 and victim.results == ["Success"]
    assert watcher.messages == []


def test_without_accounts_the_same_takeover_kicks_the_victim(tmp_path, clients):
    """The check above is not vacuous: on an anonymous broker the same connection does kick the victim."""
    m = Mosquitto(log_dir=tmp_path)
    try:
        victim = clients(m.port, client_id=A)
        victim.wait_connected()
        thief = clients(m.port, client_id=A)
        thief.wait_connected()
        wait_for(lambda: victim.disconnects >= 1, 5, "the victim kicked")
    finally:
        for c in (victim, thief):
            c.close()
        m.stop()


@pytest.mark.parametrize("listener", ["plain", "tls", "service"])
def test_anonymous_and_wrong_passwords_are_refused(broker, pki, clients, listener):
    port, ca = {"plain": (broker.port, None), "tls": (broker.tls_port, pki.ca),
                "service": (broker.service_port, pki.ca)}[listener]
    for user, password in ((None, None), (A, "wrong"), ("headend", "wrong"), ("nobody", "x")):
        c = clients(port, user, password, ca)
        assert c.refused() in ("Not authorized", "Bad user name or password"), (user, c.results)
        c.close()
    if listener == "service":  # the head-end's listener knows no terminal account
        c = clients(port, A, PASSWORDS[A], ca)
        assert c.refused() != "Success"


def test_the_headend_reads_every_terminal_and_sends_commands(broker, pki, clients):
    a, b = terminal(clients, broker, pki, A), terminal(clients, broker, pki, B)
    b.subscribe("bdmeter/%s/cmd" % B)
    # two head-end processes at once, on the head-end's listener, each with its own client id
    he1 = clients(broker.service_port, "headend", PASSWORDS["headend"], pki.ca)
    he2 = clients(broker.service_port, "headend", PASSWORDS["headend"], pki.ca)
    he1.wait_connected()
    he2.wait_connected()
    he1.subscribe("bdmeter/+/#")
    a.publish("bdmeter/%s/heartbeat" % A, b"a")
    b.publish("bdmeter/%s/heartbeat" % B, b"b")
    he2.publish("bdmeter/%s/cmd" % B, b"cmd")
    wait_for(lambda: len(he1.messages) == 3 and b.messages, what="every message delivered")
    assert sorted(t for t, _ in he1.messages) == ["bdmeter/%s/%s" % x for x in ((A, "heartbeat"), (B, "cmd"),
                                                                                 (B, "heartbeat"))]
    assert he1.disconnects == he2.disconnects == 0


def test_a_message_over_the_size_limit_is_refused_and_the_broker_stays_up(broker, pki, clients):
    a = terminal(clients, broker, pki, A)
    he = clients(broker.service_port, "headend", PASSWORDS["headend"], pki.ca)
    he.wait_connected()
    he.subscribe("bdmeter/+/#")
    a.publish("bdmeter/%s/event" % A, b"x" * (3 * LIMIT), qos=0)
    wait_for(lambda: a.disconnects >= 1, 5, "the sender disconnected")
    assert broker.proc.p.poll() is None
    a.wait_connected(10)  # it may come back, and normal messages still pass
    a.publish("bdmeter/%s/event" % A, b"small")
    wait_for(lambda: he.messages, what="a normal message after the oversize one")
    assert he.messages == [("bdmeter/%s/event" % A, b"small")]


class Relay:
    """A loopback TCP relay to `port` that keeps every byte the client sent."""

    def __init__(self, port):
        self.target = port
        self.sent = bytearray()
        self.srv = socket.create_server((LOOPBACK, 0))
        self.srv.settimeout(10)
        self.port = self.srv.getsockname()[1]
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            down, _ = self.srv.accept()
        except OSError:
            return
        up = socket.create_connection((LOOPBACK, self.target), timeout=5)
        deadline = time.monotonic() + 15
        with down, up:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([down, up], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is down:
                        self.sent += data
                    (up if s is down else down).sendall(data)

    def close(self):
        self.srv.close()
        self.t.join(timeout=20)


@pytest.mark.parametrize("listener", ["plain", "tls"])
def test_the_password_crosses_the_network_only_encrypted_on_tls(broker, pki, clients, listener):
    relay = Relay(broker.tls_port if listener == "tls" else broker.port)
    try:
        c = clients(relay.port, A, PASSWORDS[A], pki.ca if listener == "tls" else None)
        c.wait_connected()
        c.publish("bdmeter/%s/heartbeat" % A, b"through the relay")
        c.close()
    finally:
        relay.close()
    assert len(relay.sent) > 20
    assert (PASSWORDS[A].encode() in relay.sent) == (listener == "plain")


def test_revoking_a_stolen_terminals_account_takes_effect_at_once(pki, tmp_path, clients):
    """The runbook for a stolen terminal (docs/SECURITY.md): remove its account and reload the broker."""
    m = Mosquitto(log_dir=tmp_path, pki=pki, accounts=PASSWORDS)
    try:
        stolen, other = terminal(clients, m, pki, A), terminal(clients, m, pki, B)
        m.set_accounts({u: p for u, p in PASSWORDS.items() if u != A})
        wait_for(lambda: stolen.disconnects >= 1, 5, "the stolen terminal's connection closed")
        again = clients(m.tls_port, A, PASSWORDS[A], pki.ca)
        assert again.refused() == "Not authorized"
        time.sleep(0.5)
        assert other.disconnects == 0
        other.publish("bdmeter/%s/heartbeat" % B, b"still here")
    finally:
        m.stop()
