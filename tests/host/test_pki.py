"""tools/pki.py: certificates that Python's ssl verifies against the CA, and the ones it must refuse."""

import socket
import ssl
import threading

import pytest
from cryptography import x509

from tools.pki import make_pki
from tools.procs import LOOPBACK, Mosquitto

TID = "860000000000001"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), clients=(TID,))


def _handshake(server_cert, server_key, cafile, server_hostname, client_cert=None, ca_for_clients=None):
    """One TLS handshake over loopback; returns None when it verified, else the client's error text."""
    srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv_ctx.load_cert_chain(server_cert, server_key)
    if ca_for_clients:
        srv_ctx.verify_mode = ssl.CERT_REQUIRED
        srv_ctx.load_verify_locations(ca_for_clients)
    cli_ctx = ssl.create_default_context(cafile=str(cafile))
    if client_cert:
        cli_ctx.load_cert_chain(*client_cert)
    listener = socket.create_server((LOOPBACK, 0))
    listener.settimeout(5)
    port = listener.getsockname()[1]
    server_seen = {}

    def serve():
        try:
            conn, _ = listener.accept()
            conn.settimeout(5)
            with srv_ctx.wrap_socket(conn, server_side=True) as tls:
                server_seen["peer"] = tls.getpeercert()
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError) as e:
            server_seen["error"] = str(e)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
            with cli_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                assert tls.recv(2) == b"ok"
        return None
    except ssl.SSLCertVerificationError as e:
        return e.verify_message
    finally:
        t.join(timeout=10)
        listener.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_server_certificate_verifies_for_loopback(pki, host):
    assert _handshake(pki.server_cert, pki.server_key, pki.ca, host) is None


def test_server_certificate_refused_for_another_host(pki):
    assert "mismatch" in _handshake(pki.server_cert, pki.server_key, pki.ca, "example.com").lower()


def test_other_ca_refuses_the_server(pki):
    assert "unable to get local issuer" in _handshake(pki.server_cert, pki.server_key, pki.other_ca, "127.0.0.1")


def test_expired_server_refused(pki):
    cert, key = pki.expired_server()
    assert "expired" in _handshake(cert, key, pki.ca, "127.0.0.1")


def test_client_certificate_verifies_against_the_ca(pki):
    cert, key = pki.client(TID)
    assert _handshake(pki.server_cert, pki.server_key, pki.ca, "127.0.0.1", client_cert=(cert, key),
                      ca_for_clients=pki.ca) is None
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    assert c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == TID


def test_files_are_pem_with_lf_and_keys_private(pki):
    for path in (pki.ca, pki.server_cert, pki.server_key, pki.other_ca) + pki.client(TID) + pki.expired_server():
        data = path.read_bytes()
        assert data.startswith(b"-----BEGIN ") and b"\r" not in data
    assert pki.server_key.stat().st_mode & 0o077 == 0
    key = pki.server_key.read_bytes()
    assert b"PRIVATE KEY" in key


def test_mosquitto_tls_listener(pki, tmp_path):
    """A client with the CA reaches `tls_port`; with the other CA its handshake fails."""
    m = Mosquitto(log_dir=tmp_path, pki=pki)
    try:
        ok = ssl.create_default_context(cafile=str(pki.ca))
        with socket.create_connection((LOOPBACK, m.tls_port), timeout=5) as raw:
            with ok.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                # MQTT 3.1.1 CONNECT, clean session, client id "t": the broker answers CONNACK 0
                tls.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 1]) + b"t")
                assert tls.recv(4) == b"\x20\x02\x00\x00"
        bad = ssl.create_default_context(cafile=str(pki.other_ca))
        with socket.create_connection((LOOPBACK, m.tls_port), timeout=5) as raw:
            with pytest.raises(ssl.SSLCertVerificationError):
                bad.wrap_socket(raw, server_hostname="127.0.0.1")
    finally:
        m.stop()
