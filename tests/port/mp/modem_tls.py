"""Drives lib/quectel_ssl and lib/quectel_files against tools/sim/modem under the unix port (test_quectel_ssl.py).

    micropython modem_tls.py <sim_port> <control_port> <tls_port> <ca.pem> <scenario> [client.pem client.key]

scenario: 'echo' (upload, verified TLS echo, a module restart, the peer closing) or 'wrong_ca' (the CA file does not
sign the server's certificate). Every line printed is a JSON object with an "ev" key; the last is {"ev": "done"}.
"""

import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib"]

import asyncio  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

import quectel  # noqa: E402
import quectel_files  # noqa: E402
import quectel_ssl  # noqa: E402
from atengine import ATEngineError  # noqa: E402
from tcpuart import TcpUart  # noqa: E402

TIMEOUTS = {"cmd": 1500, "probe": 300, "boot": 3000, "sim": 3000, "reg": 3000, "qiact": 2000, "qideact": 1000,
            "qiclose": 1000, "qiopen": 5000, "cfun": 1000, "read": 2000, "poll": 50, "pulse": 50,
            "reset_pulse": 50, "power_off": 300}


def emit(ev, **kw):
    kw["ev"] = ev
    print(json.dumps(kw))


def ask(port, req):
    s = socket.socket()
    s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    s.write(json.dumps(req).encode() + b"\n")
    answer = json.loads(s.readline())
    s.close()
    return answer


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


async def echo(sock, payload, timeout_ms=4000):
    await sock.write(payload)
    got = b""
    t0 = time.ticks_ms()
    while len(got) < len(payload) and time.ticks_diff(time.ticks_ms(), t0) < timeout_ms:
        d = await sock.read(1460, 500)
        if d == b"":
            break
        if d:
            got += d
    return got == payload


async def wait_closed(sock, timeout_ms=4000):
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < timeout_ms:
        try:
            if await sock.read(1460, 500) == b"":
                return True
        except ATEngineError:  # the module restarted in the middle of a read: the socket is gone with it
            return sock.closed
    return False


async def echo_scenario(m, ctl, tls_port, ca, client):
    known = {}
    names = [("ca.pem", ca)] + ([("client.pem", client[0]), ("client.key", client[1])] if client else [])
    for name, path in names:
        known[name], up = await quectel_files.ensure(m, name, read_file(path))
        emit("file", name=name, uploaded=up)
    for name, path in names:  # the same content again, known: nothing to send
        _, up = await quectel_files.ensure(m, name, read_file(path), known[name])
        emit("file_again", name=name, uploaded=up)
    data = read_file(ca)
    changed = data.replace(b"A", b"B", 1) if b"A" in data else data[:-1] + b"?"
    _, up = await quectel_files.ensure(m, "ca.pem", changed, known["ca.pem"])  # same size, other content
    emit("file_changed", uploaded=up, size_same=len(changed) == len(data))
    known["ca.pem"], up = await quectel_files.ensure(m, "ca.pem", data, quectel_files.digest(changed))
    emit("file_restored", uploaded=up)
    m.tls = quectel_ssl.settings(cacert="ca.pem", clientcert="client.pem" if client else "",
                                 clientkey="client.key" if client else "", sni=True, verify_time=True)
    now = time.gmtime()
    await m.set_clock(now[:6])
    sock = await m.open_socket("127.0.0.1", tls_port, TIMEOUTS["qiopen"], label="broker", tls=True)
    emit("open", id=sock.id, tls=sock.tls)
    big = bytes(i & 0xFF for i in range(3000))
    emit("echo", ok=await echo(sock, b"hello") and await echo(sock, big))
    ask(ctl, {"fault": "reboot", "on": True})
    emit("lost", closed=await wait_closed(sock))
    sock.close()
    await m.set_clock(time.gmtime()[:6])  # re-initialises the module first (one owner), then its clock
    sock = await m.open_socket("127.0.0.1", tls_port, TIMEOUTS["qiopen"], label="broker", tls=True)
    emit("reopen", ok=await echo(sock, b"after restart"))
    ask(ctl, {"fault": "peer_close", "on": True})
    emit("peer_closed", closed=await wait_closed(sock), peer=sock.peer_closed)
    await sock.aclose()
    emit("released", stale=sorted(m._ssl_stale))


async def wrong_ca(m, tls_port, ca):
    await quectel_files.ensure(m, "ca.pem", read_file(ca))
    m.tls = quectel_ssl.settings(cacert="ca.pem")
    await m.set_clock(time.gmtime()[:6])
    for i in range(2):
        try:
            await m.open_socket("127.0.0.1", tls_port, TIMEOUTS["qiopen"], label="broker", tls=True)
            emit("opened")
        except quectel.ModemError as e:
            emit("open_failed", n=i, cls=m.failure_class(e), code=e.code, error=str(e))
            emit("rung", name=await m.recover(m.failure_class(e)))


async def main(sim_port, ctl, tls_port, ca, scenario, client):
    m = quectel.Quectel(TcpUart("127.0.0.1:%d" % sim_port), apn="cmnet", timeouts=TIMEOUTS, backoff_base_ms=20,
                        backoff_max_ms=200, server_backoff_max_ms=100)
    await m.start()
    if scenario == "echo":
        await echo_scenario(m, ctl, tls_port, ca, client)
    else:
        await wrong_ca(m, tls_port, ca)
    emit("done", ladder=m.ladder, stats=m.stats)


try:
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5],
                     sys.argv[6:8] if len(sys.argv) > 7 else None))
except Exception as e:
    sys.print_exception(e)
    emit("error", error=repr(e))
    sys.exit(1)
