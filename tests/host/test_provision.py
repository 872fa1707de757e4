"""`bdmeter-headend provision`: a terminal's broker account, command key and config, against a real mosquitto
(TLS, accounts, ACL: tools/procs.Mosquitto) and the head-end's key store. Re-provisioning rotates both secrets."""

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from harness import ROOT
from tools.headend.pgstore import open_store
from tools.pki import make_pki
from tools.procs import LOOPBACK, Mosquitto

TID = "861234567890177"
HEADEND_PASS = "he-Secret-5a0c"


class Client:
    """A paho client over TLS: its CONNACK result, and the messages it receives."""

    def __init__(self, port, user, password, cafile, cert=None, key=None):
        self.results, self.messages = [], []
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="c-%s" % os.urandom(3).hex())
        self.c.username_pw_set(user, password)
        self.c.tls_set(ca_certs=str(cafile), certfile=cert and str(cert), keyfile=key and str(key))
        self.c.on_connect = lambda c, u, f, rc, p: (self.results.append(rc), self.ready.set())
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.c.on_message = lambda c, u, msg: self.messages.append((msg.topic, msg.payload))
        self.c.connect_async(LOOPBACK, port, keepalive=30)
        self.c.loop_start()

    def result(self, timeout=10):
        assert self.ready.wait(timeout), "no CONNACK within %s s" % timeout
        return self.results[0]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def run(*argv, env=None):
    p = subprocess.run([sys.executable, "-m", "tools.headend", "provision"] + [str(a) for a in argv], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, env=env)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), clients=())


@pytest.fixture(scope="module")
def broker(pki, tmp_path_factory):
    m = Mosquitto(log_dir=tmp_path_factory.mktemp("mqtt"), pki=pki, accounts={"headend": HEADEND_PASS})
    yield m
    m.stop()


def _provision(tmp_path, broker, pki, *more):
    out = tmp_path / "t1"
    rc, text = run(TID, "--passwd-file", broker.dir / "passwd", "--out", out, "--db", tmp_path / "fleet.db",
                   "--create", "--ca", pki.ca, *more)
    assert rc == 0, text
    cfg = json.loads((out / "terminal.json").read_text())
    assert cfg["broker_pass"] not in text and cfg["cmd_key"] not in text  # never printed
    broker.proc.signal(signal.SIGHUP)  # the broker reloads its password file
    time.sleep(0.5)
    return out, cfg, text


def _publishes(broker, pki, cfg, cafile):
    """The terminal's account connects over TLS and its record under its own topic reaches the head-end."""
    head = Client(broker.service_port, "headend", HEADEND_PASS, pki.ca)
    term = Client(broker.tls_port, cfg["broker_user"], cfg["broker_pass"], cafile)
    try:
        assert not head.result().is_failure
        head.ready.clear()
        head.c.subscribe("bdmeter/#", qos=1)
        assert head.ready.wait(10)
        rc = term.result()
        assert not rc.is_failure, str(rc)
        term.c.publish("bdmeter/%s/energy" % TID, b"{}", qos=1).wait_for_publish(10)
        term.c.publish("bdmeter/860000000000999/energy", b"{}", qos=1).wait_for_publish(10)  # another's topic
        assert wait_for(lambda: head.messages)
        time.sleep(0.3)
        assert [t for t, _ in head.messages] == ["bdmeter/%s/energy" % TID]
    finally:
        term.close()
        head.close()


def test_a_provisioned_terminal_connects_and_rotation_refuses_the_old_password(tmp_path, broker, pki):
    out, cfg, text = _provision(tmp_path, broker, pki)
    assert "provisioned %s" % TID in text
    assert cfg["broker_user"] == cfg["terminal_id"] == TID and cfg["broker_tls"] and cfg["tls_ca"] == "ca.pem"
    assert len(bytes.fromhex(cfg["broker_pass"])) == 16 and len(bytes.fromhex(cfg["cmd_key"])) == 32
    assert (out / "ca.pem").read_bytes() == pki.ca.read_bytes()
    assert stat.S_IMODE((out / "terminal.json").stat().st_mode) == 0o600
    assert cfg["broker_pass"] not in (broker.dir / "passwd").read_text()  # hashed
    store = open_store(str(tmp_path / "fleet.db"))
    try:
        assert store.key(TID) == cfg["cmd_key"]
    finally:
        store.close()
    _publishes(broker, pki, cfg, out / "ca.pem")
    # the config is what make deploy takes: checkconfig passes it with its CA beside it
    from tools import checkconfig

    assert checkconfig.problems(str(out / "terminal.json")) == []

    _, new, text = _provision(tmp_path, broker, pki)  # again: rotation
    assert "rotated %s" % TID in text
    assert new["broker_pass"] != cfg["broker_pass"] and new["cmd_key"] != cfg["cmd_key"]
    old = Client(broker.tls_port, TID, cfg["broker_pass"], pki.ca)
    try:
        assert old.result().is_failure  # the old password is refused
    finally:
        old.close()
    _publishes(broker, pki, new, out / "ca.pem")
    store = open_store(str(tmp_path / "fleet.db"))
    try:
        assert store.key(TID) == new["cmd_key"]
    finally:
        store.close()
    log = broker.proc.output()
    for secret in (cfg["broker_pass"], new["broker_pass"], cfg["cmd_key"], new["cmd_key"]):
        assert secret not in log and secret not in text
    assert (broker.dir / "passwd").read_text().count(TID + ":") == 1  # replaced, not added twice


def test_a_client_certificate_for_mutual_tls(tmp_path, pki):
    m = Mosquitto(log_dir=tmp_path / "mqtt", pki=pki, accounts={"headend": HEADEND_PASS}, require_certificate=True)
    try:
        out, cfg, _ = _provision(tmp_path, m, pki, "--client-cert", "--ca-key", pki.dir / "ca.key")
        assert cfg["tls_cert"] == "client.pem" and cfg["tls_key"] == "client.key"
        assert stat.S_IMODE((out / "client.key").stat().st_mode) == 0o600
        c = Client(m.tls_port, TID, cfg["broker_pass"], out / "ca.pem", out / "client.pem", out / "client.key")
        try:
            assert not c.result().is_failure
        finally:
            c.close()
    finally:
        m.stop()


def test_a_missing_password_file_is_created_owner_only(tmp_path, pki):
    pw = tmp_path / "passwd"
    rc, text = run(TID, "--passwd-file", pw, "--out", tmp_path / "o", "--db", tmp_path / "f.db", "--create",
                   "--ca", pki.ca)
    assert rc == 0, text
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600 and pw.read_text().startswith(TID + ":$7$")


@pytest.mark.parametrize("args,words", [
    (["--client-cert"], "argument --client-cert: needs --ca and --ca-key"),
    (["--ca-key", "x.key"], "argument --ca-key: only used with --client-cert"),
    (["--ca", "{garbage}"], "argument --ca: {garbage} is not PEM with a -----BEGIN CERTIFICATE----- block"),
    (["--ca", "{nowhere}"], "argument --ca: cannot read {nowhere}"),
    (["--create", "--ca", "{ca}", "--client-cert", "--ca-key", "{other}"], "is not the key of"),
    (["--base", "{garbage}"], "argument --base: {garbage} is not JSON"),
    (["--broker-port", "0"], "argument --broker-port: must be 1..65535"),
])
def test_bad_arguments_exit_2_with_a_clear_message_and_write_nothing(tmp_path, pki, args, words):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    other_key = make_pki(tmp_path / "other", clients=()).dir / "ca.key"
    subst = {"{garbage}": str(garbage), "{nowhere}": str(tmp_path / "nowhere.pem"), "{ca}": str(pki.ca),
             "{other}": str(other_key)}
    args = [subst.get(a, a) for a in args]
    words = words.format(garbage=garbage, nowhere=tmp_path / "nowhere.pem")
    db = ["--create"] if "--create" not in args else []
    rc, text = run(TID, "--passwd-file", tmp_path / "passwd", "--out", tmp_path / "o", "--db", tmp_path / "f.db",
                   *(db + args))
    assert rc == 2, text
    assert words in text and "Traceback" not in text, text
    assert not (tmp_path / "passwd").exists() and not (tmp_path / "o").exists() and not (tmp_path / "f.db").exists()


@pytest.mark.parametrize("tid,words", [("bad/id", "argument TID"), ("headend", "head-end's accounts")])
def test_bad_terminal_ids_are_refused(tmp_path, tid, words):
    rc, text = run(tid, "--passwd-file", tmp_path / "passwd", "--out", tmp_path / "o", "--create",
                   "--db", tmp_path / "f.db")
    assert rc == 2 and words in text and "Traceback" not in text, text
    assert not (tmp_path / "passwd").exists()


def test_without_a_database_and_without_create_it_says_so(tmp_path):
    rc, text = run(TID, "--passwd-file", tmp_path / "passwd", "--out", tmp_path / "o", "--db", tmp_path / "f.db")
    assert rc == 2 and "argument --db: no database at" in text and "--create" in text, text
    assert not (tmp_path / "o").exists()
