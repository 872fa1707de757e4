"""firmware/uplink under CPython with stand-ins for the modem and the MQTT session: what happens during a connect,
how failures are classified for the modem's recovery, and the per-record debug lines."""

import asyncio
import binascii
import socket
import struct
import sys

from harness import ROOT

if str(ROOT / "build/lib") not in sys.path:
    sys.path.append(str(ROOT / "build/lib"))  # umqtt (fetched by `make deps`); after the stdlib on purpose
sys.modules.setdefault("usocket", socket)  # umqtt.simple's MicroPython names
sys.modules.setdefault("ustruct", struct)
sys.modules.setdefault("ubinascii", binascii)

import quectel_socket  # noqa: E402
from atengine import ATTimeout  # noqa: E402
from quectel_ladder import failure_class  # noqa: E402

from firmware import uplink as uplink_mod  # noqa: E402


class _Log:
    def __init__(self):
        self.lines = []

    def _log(self, msg, *args):
        self.lines.append((msg % args) if args else msg)

    debug = info = warning = error = _log


class _Sock:
    peer_closed = False


class _Modem:
    def __init__(self):
        self.ready = True
        self.opened = []
        self.causes = []

    async def open_socket(self, host, port, label="peer", tls=False):
        self.opened.append((host, port, label) + (("tls",) if tls else ()))
        return _Sock()

    def failure_class(self, e):
        return failure_class(e)

    def recovered(self):
        pass


class _Clock:
    def stamp(self):
        return 1700000000, "net"


class _Commands:
    def incoming(self, topic, msg):
        pass


class _T:
    ModemError = quectel_socket.ModemError

    def __init__(self):
        self.cfg = {"topic_prefix": "bdmeter", "broker_host": "10.1.2.3", "broker_port": 8883, "broker_user": "",
                    "broker_pass": "", "keepalive_s": 60, "broker_tls": False}
        self.tid = "861234567890123"
        self.modem = _Modem()
        self.modem_errors = (quectel_socket.ModemError, OSError)
        self.link_errors = self.modem_errors
        self.clock = _Clock()
        self.commands = _Commands()
        self.log = _Log()
        self.mqtt_counters = {}


def test_an_answer_sent_while_the_connect_is_still_running_goes_out(monkeypatch):
    t = _T()
    up = uplink_mod.Uplink(t)
    answered = []
    sessions = []

    class FakeSession:
        def __init__(self, stream, *a, **kw):
            self.connected = False
            self.sent = []
            sessions.append(self)

        async def connect(self, will=None, clean=True):
            self.clean = clean
            self.connected = True  # CONNACK came

        async def subscribe(self, topic, qos):
            # a command queued for us arrives with the subscription and is answered at once
            if topic.endswith("/cmd"):
                answered.append(await up.publish("resp", '{"id":"x","ok":true}'))

        async def publish(self, topic, text, qos=0, retain=False):
            self.sent.append(topic)

        def close(self):
            self.connected = False

    monkeypatch.setattr(uplink_mod, "Session", FakeSession)
    s = asyncio.run(up._connect())
    assert answered == [True]
    assert "bdmeter/861234567890123/resp" in s.sent
    assert t.modem.opened == [("10.1.2.3", 8883, "broker")]
    assert sessions[0].clean is False  # a persistent session: the broker queues commands while the terminal is away


def test_failures_are_classified_for_the_modem():
    t = _T()
    up = uplink_mod.Uplink(t)
    assert up.classify(quectel_socket.ServerError("broker 10.1.2.3:8883: refused"), True) == "server"
    assert up.classify(quectel_socket.NetworkError("no active PDP context"), True) == "network"
    assert up.classify(ATTimeout("AT+QISEND=0,20: no result"), False) == "module"
    # MQTT refused or no CONNACK on a socket the healthy module opened: the server's side
    up._stream = uplink_mod._SocketStream(_Sock(), t.modem_errors)
    assert up.classify(uplink_mod.MQTTError("connection refused, code 5"), True) == "server"
    # the session died mid-way: the server closed the connection -> server; otherwise unclassified
    assert up.classify(uplink_mod.MQTTError("stream closed by peer"), False) is None
    up._stream.sock.peer_closed = True
    assert up.classify(uplink_mod.MQTTError("stream closed by peer"), False) == "server"
    # a modem error under the stream decides (a hung module while sending)
    up._stream.error = ATTimeout("AT+QISEND=0,20: no result")
    assert up.classify(OSError("modem: ..."), False) == "module"
    # a module that is not ready (restarted): not the server's fault
    up._stream = uplink_mod._SocketStream(_Sock(), t.modem_errors)
    t.modem.ready = False
    assert up.classify(uplink_mod.MQTTError("no CONNACK within 20000 ms"), True) is None


def test_debug_lines_per_record_published_and_acknowledged():
    t = _T()
    up = uplink_mod.Uplink(t)

    recs = [(7, "energy", "{}"), (8, "event", "{}")]

    class Outbox:
        def peek(self, n):
            return recs[:n]

        def ack(self, seq):
            recs.remove(next(r for r in recs if r[0] == seq))

    class S:
        connected = True

        async def publish(self, topic, text, qos=0, retain=False):
            if topic.endswith("event"):
                self.connected = False  # the session ends after the last record's PUBACK

    t.outbox = Outbox()
    t.checkin = lambda name: None
    asyncio.run(up._drain(S()))
    assert "record 7 (energy) published" in t.log.lines and "record 7 acknowledged" in t.log.lines
    assert "record 8 (event) published" in t.log.lines and "record 8 acknowledged" in t.log.lines
