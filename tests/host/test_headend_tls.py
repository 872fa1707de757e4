"""The head-end's account and TLS options (--mqtt-*): ingest and commands through the secured broker, bad options
refused up front with exit 2, and the password never in any output."""

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from harness import wait_for

from tools.headend import Store, cli, synth
from tools.pki import make_pki
from tools.procs import LOOPBACK, ROOT, Mosquitto, Proc

TID = "860000000000021"
HE_PASSWORD = "headend-Pw-5c3a91"
ACCOUNTS = {"headend": HE_PASSWORD, TID: "term-Pw-77e0b2"}
KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    pki = make_pki(d / "pki", clients=("headend",))
    m = Mosquitto(log_dir=d, pki=pki, accounts=ACCOUNTS)
    pw = d / "headend.pw"
    pw.write_text(HE_PASSWORD + "\n")
    pw.chmod(0o600)
    yield pki, m, pw
    m.stop()


def options(pki, pw, port, user="headend"):
    return ["--broker", "127.0.0.1:%d" % port, "--mqtt-user", user, "--mqtt-password-file", str(pw),
            "--mqtt-cafile", str(pki.ca)]


class Terminal:
    """A terminal's side over TLS with its own account: publishes, and answers signed commands like the firmware."""

    def __init__(self, pki, port):
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=TID)
        self.c.username_pw_set(TID, ACCOUNTS[TID])
        self.c.tls_set(ca_certs=str(pki.ca))
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe("bdmeter/%s/cmd" % TID, qos=1)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.c.on_message = self._on_cmd
        self.c.connect(LOOPBACK, port, keepalive=30)
        self.c.loop_start()
        assert self.ready.wait(10)

    def _on_cmd(self, client, userdata, msg):
        env = json.loads(msg.payload)
        canon = b"bdmeter-cmd-v1\n" + TID.encode() + b"\n" + env["body"].encode()
        ok = hmac.compare_digest(hmac.new(bytes.fromhex(KEY), canon, hashlib.sha256).hexdigest(), env["mac"])
        body = json.loads(env["body"])
        answer = {"v": 1, "id": body["id"], "ok": ok, "ts": int(time.time()), "tsrc": "gnss", "result": {}}
        client.publish("bdmeter/%s/resp" % TID, json.dumps(answer), qos=1)

    def pub(self, leaf, payload):
        info = self.c.publish("bdmeter/%s/%s" % (TID, leaf), payload, qos=1)
        info.wait_for_publish(timeout=5)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_run_ingests_through_tls_with_its_account(env, tmp_path):
    pki, m, pw = env
    db = tmp_path / "fleet.db"
    proc = Proc([sys.executable, "-m", "tools.headend", "run", "--db", db, "-v", "--client-id", "headend-ingest"]
                + options(pki, pw, m.service_port), "headend", log_dir=tmp_path)
    term = Terminal(pki, m.tls_port)
    try:
        proc.wait_output("subscribed to bdmeter/+/#", timeout=15)
        term.pub("energy", synth.energy(1, 1795478400, "000072007221", 42.5))
        wait_for(lambda: db.exists() and Store(db).count("readings") == 1, what="stored through TLS")
    finally:
        term.close()
        rc = proc.stop(timeout=30)
    out = proc.output()
    assert rc == 0, out
    assert "TLS" in out and HE_PASSWORD not in out


def test_query_and_concurrent_commands_through_tls(env, capsys):
    """Two commands at once with the same head-end account on the head-end's listener, as the web app does:
    each gets its answer (client ids are not bound to the username there)."""
    pki, m, pw = env
    term = Terminal(pki, m.tls_port)
    results = []
    try:
        def one():
            results.append(cli.main(["query", "--key", KEY, "--timeout", "10", TID, "status"]
                                    + options(pki, pw, m.service_port)))
        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        term.close()
    out = capsys.readouterr()
    assert results == [0, 0, 0], out.err
    assert HE_PASSWORD not in out.out + out.err


@pytest.mark.parametrize("what", ["wrong password", "other CA"])
def test_a_refused_connection_says_why_without_the_password(env, tmp_path, capsys, what):
    pki, m, pw = env
    opts = options(pki, pw, m.service_port)
    if what == "wrong password":
        bad = tmp_path / "bad.pw"
        bad.write_text("not-" + HE_PASSWORD)
        opts[opts.index(str(pw))] = str(bad)
    else:
        opts[opts.index(str(pki.ca))] = str(pki.other_ca)
    rc = cli.main(["query", "--key", KEY, "--timeout", "2", TID, "status"] + opts)
    err = capsys.readouterr().err
    assert rc == 2
    assert ("Not authorized" in err or "user name or password" in err) if what == "wrong password" \
        else "certificate is refused" in err
    assert HE_PASSWORD not in err and "Traceback" not in err


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "tools.headend"] + [str(a) for a in argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_bad_options_are_refused_up_front(env, tmp_path):
    pki, m, pw = env
    cert, key = pki.client("headend")
    empty = tmp_path / "empty.pw"
    empty.write_text("\n")
    cases = [
        (["--mqtt-user", "headend", "--mqtt-password-file", tmp_path / "missing"], "--mqtt-password-file",
         "cannot read"),
        (["--mqtt-user", "headend", "--mqtt-password-file", tmp_path], "--mqtt-password-file", "cannot read"),
        (["--mqtt-user", "headend", "--mqtt-password-file", empty], "--mqtt-password-file", "empty"),
        (["--mqtt-password-file", pw], "--mqtt-password-file", "needs --mqtt-user"),
        (["--mqtt-user", "head end"], "--mqtt-user", "not a broker username"),
        (["--mqtt-cafile", pw], "--mqtt-cafile", "not a PEM certificate"),
        (["--mqtt-cafile", tmp_path / "nope.pem"], "--mqtt-cafile", "cannot read"),
        (["--mqtt-cafile", pki.ca, "--mqtt-certfile", cert], "--mqtt-keyfile", "go together"),
        (["--mqtt-certfile", cert, "--mqtt-keyfile", key], "--mqtt-certfile", "needs TLS"),
        (["--mqtt-cafile", pki.ca, "--mqtt-certfile", cert, "--mqtt-keyfile", pki.server_key], "--mqtt-keyfile",
         "is not the key of"),
        (["--broker", "127.0.0.1:70000"], "--broker", "port"),
    ]
    for extra, option, text in cases:
        r = _cli("run", "--db", tmp_path / "x.db", *extra)
        assert r.returncode == 2, (extra, r.stderr)
        assert option in r.stderr and text in r.stderr, (extra, r.stderr)
        assert "Traceback" not in r.stderr and HE_PASSWORD not in r.stderr + r.stdout
    assert not (tmp_path / "x.db").exists()


def test_mutual_tls_needs_the_client_certificate(tmp_path):
    """With require_certificate the TLS listener takes only clients showing a certificate from the CA: the
    head-end's --mqtt-certfile/--mqtt-keyfile get it in; the same account without them is refused."""
    pki = make_pki(tmp_path / "pki", clients=("headend",))
    m = Mosquitto(log_dir=tmp_path, pki=pki, accounts=ACCOUNTS, require_certificate=True)
    pw = tmp_path / "headend.pw"
    pw.write_text(HE_PASSWORD)
    cert, key = pki.client("headend")
    db = tmp_path / "fleet.db"
    try:
        base = ["run", "--db", db] + options(pki, pw, m.tls_port)
        proc = Proc([sys.executable, "-m", "tools.headend"] + base + ["--mqtt-certfile", cert, "--mqtt-keyfile", key],
                    "headend-mtls", log_dir=tmp_path)
        try:
            proc.wait_output("subscribed to bdmeter/+/#", timeout=15)
        finally:
            assert proc.stop(timeout=30) == 0, proc.output()
        r = subprocess.run([sys.executable, "-m", "tools.headend", "query", "--key", KEY, "--timeout", "2", TID,
                            "status"] + options(pki, pw, m.tls_port), cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2 and "no connection to the broker" in r.stderr, r.stderr
        assert "CERTIFICATE_REQUIRED" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and HE_PASSWORD not in r.stderr
    finally:
        m.stop()


@pytest.mark.parametrize("command", [["run"], ["query", "--key", KEY, TID], ["update", "--key", KEY, "--bundle", "B",
                                                                             TID], ["serve"]])
def test_every_connecting_command_takes_the_options_and_hides_the_password(env, command, monkeypatch):
    from tools.headend import args as types
    from tools.headend import mqttconn

    pki, m, pw = env
    monkeypatch.setattr(types, "bundle", lambda text: text)  # no bundle needed to parse `update`
    monkeypatch.setattr(types, "existing_db", lambda text: text)
    a = cli.parser().parse_args(command + options(pki, pw, m.service_port))
    mqttconn.resolve(a)
    assert isinstance(a.broker, mqttconn.Broker) and a.broker.tls and a.broker.user == "headend"
    assert a.broker.password.reveal() == HE_PASSWORD
    for text in (str(a), repr(a), str(a.broker), repr(vars(a))):
        assert HE_PASSWORD not in text
