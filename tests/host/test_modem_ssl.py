"""tools/sim/modem: TLS and file system over raw AT, against a real TLS server on loopback (tools/pki certificates)."""

import datetime
import time

import pytest

from test_modem_sim import SCALE, booted, pdp_up
from tools.pki import make_pki
from tools.sim.modem import ModemSim
from tools.sim.modem_basic import parse_cclk
from tools.sim.modem_files import checksum
from tools.sim.tls_peer import TlsEcho

TID = "860000000000001"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), clients=(TID,))


@pytest.fixture
def sim():
    s = ModemSim(delay_scale=SCALE, cold_start_s=0.3, fake_fix_s=0.3, seed=2)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def server(pki):
    srv = TlsEcho(pki.server_cert, pki.server_key)
    yield srv
    srv.stop()


def connect(u, text):
    u.s.sendall(text.encode() + b"\r")
    u.wait(b"\r\nCONNECT\r\n")


def upload(u, name, data):
    connect(u, 'AT+QFUPL="%s",%d,5' % (name, len(data)))
    u.s.sendall(data)
    return u.wait(b"\r\nOK\r\n")


def up(sim):
    u = booted(sim)
    pdp_up(u)
    return u


def ssl_open(u, host, port, sid=1, ctx=1):
    assert u.cmd('AT+QSSLOPEN=1,%d,%d,"%s",%d,0' % (ctx, sid, host, port)).endswith(b"\r\nOK\r\n")
    got = u.wait(b"+QSSLOPEN: %d," % sid, timeout=8) + u.wait(b"\r\n")
    return int(got.rsplit(b",", 1)[1])


def cfg(u, ctx, **items):
    for k, v in items.items():
        val = '"%s"' % v if isinstance(v, str) else ("0x%04X" % v if k == "ciphersuite" else str(v))
        assert u.cmd('AT+QSSLCFG="%s",%d,%s' % (k, ctx, val)).endswith(b"\r\nOK\r\n"), k


def verifying(u, pki, ctx=1, ca_name="ca.pem", **more):
    upload(u, ca_name, pki.ca.read_bytes())
    cfg(u, ctx, seclevel=1, cacert=ca_name, **more)


# -- checksum and file system ----------------------------------------------------------------


def test_upload_checksum_is_the_xor_of_big_endian_words():
    assert checksum(b"") == 0
    assert checksum(b"\x12\x34") == 0x1234
    assert checksum(b"\x12\x34\x56\x78") == 0x1234 ^ 0x5678 == 0x444C
    assert checksum(b"\x12\x34\x56") == 0x1234 ^ 0x5600 == 0x4434  # odd last byte paired with 0x00
    assert checksum(b"ABAB") == 0 and checksum(b"\x00\x0f") == 0x000F
    # 1188 bytes like a PEM file with LF: 594 words; the same word an even number of times cancels out
    data = bytes(range(256)) * 4 + bytes(164)
    assert len(data) == 1188
    expect = 0
    for i in range(0, 1024, 2):
        expect ^= (data[i] << 8) | data[i + 1]
    assert checksum(data) == expect == 0  # 0x0001..0xfeff four times over


def test_file_upload_list_delete_space_and_restart(sim):
    u = booted(sim)
    out = upload(u, "ca.pem", b"\x00\x0f\x10")
    assert b"+QFUPL: 3,100f\r\n" in out  # 0x000f ^ 0x1000, hex without leading zeros
    assert b"+CME ERROR: 407" in u.cmd('AT+QFUPL="ca.pem",3,5')  # exists: delete first
    assert b'+QFLST: "UFS:ca.pem",3\r\n' in u.cmd('AT+QFLST="*"')
    assert b"+QFLDS: %d,%d" % (262144 - 3, 262144) in u.cmd('AT+QFLDS="UFS"')
    upload(u, "RAM:tmp.bin", b"xy")
    assert b'+QFLST: "RAM:tmp.bin",2' in u.cmd('AT+QFLST="RAM:*"')
    sim.set_fault("reboot")
    u.wait(b"+QIND: SMS DONE\r\n", timeout=5)
    u.cmd("ATE0")
    u.cmd("AT+CMEE=1")
    assert b'"UFS:ca.pem",3' in u.cmd('AT+QFLST="*"')  # flash survives a restart
    assert b"RAM:" not in u.cmd('AT+QFLST="RAM:*"')  # RAM does not
    assert u.cmd('AT+QFDEL="ca.pem"').endswith(b"\r\nOK\r\n")
    assert b"+CME ERROR: 405" in u.cmd('AT+QFDEL="ca.pem"')
    assert sim.file("ca.pem") is None


def test_upload_ack_mode_and_timeout(sim):
    u = booted(sim)
    data = bytes(range(256)) * 9  # 2304 bytes: an A after 1024 and after 2048
    connect(u, 'AT+QFUPL="big.bin",%d,5,1' % len(data))
    u.s.sendall(data[:1024])
    u.wait(b"A")
    u.s.sendall(data[1024:2048])
    u.wait(b"A")
    u.s.sendall(data[2048:])
    assert b"+QFUPL: 2304,%x" % checksum(data) in u.wait(b"\r\nOK\r\n")
    connect(u, 'AT+QFUPL="short.bin",100,1')
    u.s.sendall(b"only ten!!")
    assert b"+QFUPL: 10," in u.wait(b"\r\nOK\r\n", timeout=3)  # the time is up: what came is the file
    assert sim.file("UFS:short.bin") == b"only ten!!"


def test_module_clock_set_and_read(sim):
    u = booted(sim)
    assert u.cmd('AT+CCLK="30/01/02,03:04:05+32"').endswith(b"\r\nOK\r\n")
    out = u.cmd("AT+CCLK?")
    when, zone = parse_cclk(out.split(b'"')[1].decode())
    assert zone == 32 and abs((when - datetime.datetime(2030, 1, 1, 19, 4, 5, tzinfo=datetime.timezone.utc))
                              .total_seconds()) < 5
    assert b"+CME ERROR: 50" in u.cmd('AT+CCLK="garbage"')


# -- TLS ---------------------------------------------------------------------------------


def test_server_verified_tls_echo_recv_loop_state_and_close(sim, pki, server):
    u = up(sim)
    verifying(u, pki)
    assert b'+QSSLCFG: "seclevel",1,1' in u.cmd('AT+QSSLCFG="seclevel",1')
    assert b'+QSSLCFG: "ignorelocaltime",1,1' in u.cmd('AT+QSSLCFG="ignorelocaltime",1')  # the default
    assert ssl_open(u, "127.0.0.1", server.port) == 0
    assert b'+QSSLSTATE: 1,"SSLClient","127.0.0.1",%d,0,2,' % server.port in u.cmd("AT+QSSLSTATE")
    assert u.cmd("AT+QISEND=1,5").endswith(b"\r\nERROR\r\n")  # a TCP command does not reach a TLS socket
    assert b'+QSSLCFG: "sni",1,0' in u.cmd('AT+QSSLCFG="sni",1')  # the default: no server name
    assert u.cmd("AT+QSSLSEND=1,5").endswith(b"> ")
    u.s.sendall(b"hello")
    assert u.wait(b"SEND OK\r\n")
    u.wait(b'+QSSLURC: "recv",1\r\n', timeout=5)
    got = b""
    for _ in range(10):
        out = u.cmd("AT+QSSLRECV=1,1500")
        if b"+QSSLRECV: 0\r\n" in out:
            break
        got += out.split(b"\r\n")[2]
    assert got == b"hello"
    log = sim.tls_log[-1]
    assert log["err"] == 0 and log["version"] == "TLSv1.2" and log["hs_up"] > 0 and log["hs_down"] > 0
    server.close_all()
    u.wait(b'+QSSLURC: "closed",1\r\n', timeout=5)
    assert u.cmd("AT+QSSLCLOSE=1").endswith(b"\r\nOK\r\n")
    assert b"+QSSLSTATE: 1" not in u.cmd("AT+QSSLSTATE")
    assert server.sni == [None]  # an IP address is never sent as a server name


def test_every_certificate_failure_is_566(sim, pki, server, tmp_path):
    u = up(sim)
    upload(u, "other.pem", pki.other_ca.read_bytes())
    cfg(u, 1, seclevel=1, cacert="other.pem")
    assert ssl_open(u, "127.0.0.1", server.port) == 566  # unknown root
    assert "certificate verify failed" in sim.tls_log[-1]["failure"]
    u.cmd("AT+QSSLCLOSE=1")
    cfg(u, 1, cacert="missing.pem")
    assert ssl_open(u, "127.0.0.1", server.port) == 566  # no such CA file on the module
    u.cmd("AT+QSSLCLOSE=1")
    upload(u, "ca.pem", pki.ca.read_bytes())
    cfg(u, 1, cacert="ca.pem")
    other = make_pki(tmp_path, clients=(), hosts=("10.9.9.9",))  # right CA? no: another CA and another host
    wrong_host = TlsEcho(other.server_cert, other.server_key)
    try:
        upload(u, "ca2.pem", other.ca.read_bytes())
        cfg(u, 1, cacert="ca2.pem")
        assert ssl_open(u, "127.0.0.1", wrong_host.port) == 566  # the certificate names another host
        assert "does not name" in sim.tls_log[-1]["failure"]
    finally:
        wrong_host.stop()
    u.cmd("AT+QSSLCLOSE=1")
    cfg(u, 1, seclevel=0)
    assert ssl_open(u, "127.0.0.1", server.port) == 0  # no verification at all


def test_expired_certificate_and_the_module_clock(pki):
    sim = ModemSim(delay_scale=SCALE, cold_start_s=0.3, fake_fix_s=0.3, seed=2, clock_error_s=-4 * 365 * 86400)
    sim.start()
    expired = TlsEcho(*pki.expired_server())
    good = TlsEcho(pki.server_cert, pki.server_key)
    try:
        u = up(sim)
        verifying(u, pki)
        assert ssl_open(u, "127.0.0.1", expired.port) == 0  # ignorelocaltime 1 (default): dates not checked
        u.cmd("AT+QSSLCLOSE=1")
        cfg(u, 1, ignorelocaltime=0)
        assert ssl_open(u, "127.0.0.1", expired.port) == 566
        u.cmd("AT+QSSLCLOSE=1")
        assert ssl_open(u, "127.0.0.1", good.port) == 566  # the module's clock says four years ago
        assert "not valid at the module's time" in sim.tls_log[-1]["failure"]
        u.cmd("AT+QSSLCLOSE=1")
        now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=8)
        u.cmd('AT+CCLK="%s+32"' % now.strftime("%y/%m/%d,%H:%M:%S"))
        assert ssl_open(u, "127.0.0.1", good.port) == 0  # the clock set: the handshake passes
        u.cmd("AT+QSSLCLOSE=1")
        assert ssl_open(u, "127.0.0.1", expired.port) == 566
    finally:
        expired.stop()
        good.stop()
        sim.stop()


def test_mutual_tls_and_sni(sim, pki):
    srv = TlsEcho(pki.server_cert, pki.server_key, ca=pki.ca, require_client=True)
    try:
        u = up(sim)
        verifying(u, pki)
        assert ssl_open(u, "localhost", srv.port) == 566  # the server wants a client certificate
        u.cmd("AT+QSSLCLOSE=1")
        cert, key = pki.client(TID)
        upload(u, "client.pem", cert.read_bytes())
        upload(u, "client.key", key.read_bytes())
        cfg(u, 1, seclevel=2, clientcert="client.pem", clientkey="client.key")
        assert ssl_open(u, "localhost", srv.port) == 0
        assert srv.wait_handshakes(1)  # the module reports the open when its side is done, maybe before the server's
        assert srv.peers[-1] == TID
        assert srv.sni[-1] is None  # sni 0 (default): no server name sent
        u.cmd("AT+QSSLCLOSE=1")
        cfg(u, 1, sni=1)
        assert ssl_open(u, "localhost", srv.port) == 0
        assert srv.wait_handshakes(2)
        assert srv.sni[-1] == "localhost"
    finally:
        srv.stop()


def test_config_is_volatile_and_bad_settings_are_refused(sim, pki, server):
    u = up(sim)
    cfg(u, 2, sslversion=3, ciphersuite=0xC02B, seclevel=0, negotiatetime=60)
    assert b'"ciphersuite",2,0xC02B' in u.cmd('AT+QSSLCFG="ciphersuite",2')
    assert ssl_open(u, "127.0.0.1", server.port, sid=3, ctx=2) == 0
    assert sim.tls_log[-1]["cipher"] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    for bad in ('"seclevel",1,3', '"negotiatetime",1,5', '"ciphersuite",1,0x1234', '"nosuch",1,1', '"sni",9,1'):
        assert b"+CME ERROR: 50" in u.cmd("AT+QSSLCFG=%s" % bad), bad
    assert b"+CME ERROR: 50" in u.cmd('AT+QSSLOPEN=1,1,4,"127.0.0.1",%d,1' % server.port)  # direct push: not here
    assert ssl_open(u, "127.0.0.1", server.port, sid=3, ctx=2) == 563  # id in use until QSSLCLOSE
    sim.set_fault("reboot")
    u.wait(b"+QIND: SMS DONE\r\n", timeout=5)
    u.cmd("ATE0")
    u.cmd("AT+CMEE=1")
    assert b'"sslversion",2,4' in u.cmd('AT+QSSLCFG="sslversion",2')  # forgotten: the default again
    assert b'"sni",2,0' in u.cmd('AT+QSSLCFG="sni",2')
    assert b"+QSSLSTATE: 3" not in u.cmd("AT+QSSLSTATE")


def test_handshake_to_a_plain_server_fails_and_counts_wire_bytes(sim, pki):
    import socket

    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen(1)
    plain.settimeout(5)  # bounded: the simulator connects at once
    try:
        u = up(sim)
        verifying(u, pki)
        t0 = time.monotonic()
        assert u.cmd('AT+QSSLOPEN=1,1,0,"127.0.0.1",%d' % plain.getsockname()[1]).endswith(b"OK\r\n")
        c, _ = plain.accept()
        c.settimeout(5)
        c.recv(4096)
        c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        c.close()
        assert b"+QSSLOPEN: 0,566" in u.wait(b"+QSSLOPEN: 0,566", timeout=5)
        assert time.monotonic() - t0 < 5
        assert sim.tls_log[-1]["hs_up"] > 0
    finally:
        plain.close()
