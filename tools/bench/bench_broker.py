"""The secured broker's costs: connection time and bytes on the wire (plain, account, TLS), and head-end ingest
through TLS with accounts and the ACL against an anonymous plain broker."""

import select
import socket
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

CONNECTS = 40
MESSAGES = 3000
BATCH = 500
TID = "861234567890001"
PASSWORDS = {"headend": "bench-headend-pw", TID: "bench-terminal-pw"}


def _connect_packet(client_id, user=None, password=None):
    """An MQTT 3.1.1 CONNECT (clean session, keepalive 60) with an optional username and password."""
    def s(text):
        b = text.encode()
        return len(b).to_bytes(2, "big") + b

    flags = 0x02 | (0x80 if user else 0) | (0x40 if password else 0)
    body = s("MQTT") + bytes([4, flags, 0, 60]) + s(client_id) + (s(user) if user else b"") + \
        (s(password) if password else b"")
    return bytes([0x10, len(body)]) + body


def _relay(target, counts, ready):
    """One loopback connection relayed to `target`; counts the bytes each way."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(10)
    ready.append(srv.getsockname()[1])
    try:
        down, _ = srv.accept()
    except OSError:
        return
    up = socket.create_connection(("127.0.0.1", target), timeout=5)
    deadline = time.monotonic() + 10
    with down, up, srv:
        while time.monotonic() < deadline:
            r, _, _ = select.select([down, up], [], [], 0.2)
            for sock in r:
                data = sock.recv(65536)
                if not data:
                    return
                counts["up" if sock is down else "down"] += len(data)
                (up if sock is down else down).sendall(data)


def _session(port, ctx, user, password, relay=False):
    """Open, CONNECT, wait for CONNACK 0, DISCONNECT, close. Returns (seconds, bytes up, bytes down)."""
    counts = {"up": 0, "down": 0}
    t = None
    if relay:
        ready = []
        t = threading.Thread(target=_relay, args=(port, counts, ready), daemon=True)
        t.start()
        deadline = time.monotonic() + 5
        while not ready and time.monotonic() < deadline:
            time.sleep(0.001)
        port = ready[0]
    t0 = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if ctx is not None:
        sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    sock.sendall(_connect_packet(user or "bench", user, password))
    ack = sock.recv(4)
    dt = time.perf_counter() - t0
    if ack != b"\x20\x02\x00\x00":
        raise RuntimeError("CONNACK %r" % ack)
    sock.sendall(b"\xe0\x00")
    sock.close()
    if t is not None:
        t.join(timeout=10)
    return dt, counts["up"], counts["down"]


def _connections(tmp):
    from tools.pki import make_pki
    from tools.procs import Mosquitto

    pki = make_pki(Path(tmp) / "pki", clients=())
    plain = Mosquitto(log_dir=Path(tmp) / "plain")
    secured = Mosquitto(log_dir=Path(tmp) / "secured", pki=pki, accounts=PASSWORDS)
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    out = {}
    try:
        cases = {"plain_anonymous": (plain.port, None, None, None),
                 "plain_account": (secured.port, None, TID, PASSWORDS[TID]),
                 "tls_account": (secured.tls_port, ctx, TID, PASSWORDS[TID])}
        for name, (port, c, user, pw) in cases.items():
            times = [_session(port, c, user, pw)[0] for _ in range(CONNECTS)]
            _, up, down = _session(port, c, user, pw, relay=True)
            out["connect_%s_ms_p50" % name] = round(statistics.median(times) * 1000, 2)
            out["connect_%s_bytes_up_down" % name] = "%d/%d" % (up, down)
    finally:
        plain.stop()
        secured.stop()
    return out


def _ingest(tmp, secure):
    """Messages per second stored by the head-end from one terminal publishing QoS 1 as fast as it can."""
    import paho.mqtt.client as mqtt

    from tools.headend import synth
    from tools.headend.mqttconn import Broker
    from tools.headend.service import Headend
    from tools.pki import make_pki
    from tools.procs import Mosquitto

    d = Path(tmp) / ("ingest-secure" if secure else "ingest-plain")
    d.mkdir()
    pki = make_pki(d / "pki", clients=()) if secure else None
    m = Mosquitto(log_dir=d, pki=pki, accounts=PASSWORDS if secure else None, max_packet_size=16384 if secure else None)
    head = c = None
    try:
        if secure:
            broker = Broker("127.0.0.1:%d" % m.service_port, "headend", PASSWORDS["headend"], pki.ca)
        else:
            broker = "127.0.0.1:%d" % m.port
        head = Headend(broker, str(d / "fleet.db")).start(timeout_s=10)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=TID)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        if secure:
            c.username_pw_set(TID, PASSWORDS[TID])
            c.tls_set(ca_certs=str(pki.ca))
        c.connect("127.0.0.1", m.tls_port if secure else m.port, keepalive=60)
        c.loop_start()
        msgs = [synth.energy(seq, 1795478400 + 60 * seq, "000072000001", 10 + seq * 0.01)
                for seq in range(1, MESSAGES + 1)]
        t0 = time.perf_counter()
        deadline = time.monotonic() + 120
        # in steps of BATCH, each stored before the next: mosquitto queues at most 1000 messages per client
        for i in range(0, MESSAGES, BATCH):
            for info in [c.publish("bdmeter/%s/energy" % TID, p, qos=1) for p in msgs[i:i + BATCH]]:
                info.wait_for_publish(timeout=60)
            while head.store.count("readings") < min(MESSAGES, i + BATCH) and time.monotonic() < deadline:
                time.sleep(0.005)
        dt = time.perf_counter() - t0
        if head.store.count("readings") < MESSAGES:
            raise RuntimeError("only %d of %d stored" % (head.store.count("readings"), MESSAGES))
        return MESSAGES / dt
    finally:
        if c is not None:
            c.disconnect()
            c.loop_stop()
        if head is not None:
            head.stop()
            head.store.close()
        m.stop()


def run():
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        out = _connections(tmp)
        out["ingest_plain_anonymous_messages_per_s"] = round(_ingest(tmp, False))
        out["ingest_tls_accounts_acl_messages_per_s"] = round(_ingest(tmp, True))
    return out
