"""A throw-away certificate authority for tests, the demo and `make sim`: CA, server and client certificates.

    pki = make_pki(directory, clients=("860000000000001",), hosts=("127.0.0.1", "localhost"))
    pki.ca, pki.server_cert, pki.server_key, pki.client(name), pki.other_ca, pki.expired_server()

EC P-256 keys (small and fast to make and to verify on a modem), PEM files with LF line ends, keys
unencrypted and readable by the owner only. Nothing here is meant for a production CA: a field
deployment keeps its CA key offline (docs/SECURITY.md).
"""

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)
VALID_DAYS = 825


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bdmeter test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path, data, private=False):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def _write_key(path, key):
    return _write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), private=True)


def _write_cert(path, cert):
    return _write(path, cert.public_bytes(serialization.Encoding.PEM))


def _ca(cn):
    key = _key()
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + VALID_DAYS * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _san(hosts):
    names = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def leaf(ca_key, ca_cert, cn, server, hosts=(), not_before=None, not_after=None):
    """A new key and a certificate for `cn` signed by the CA: a server's (with `hosts` as SANs) or a client's."""
    key = _key()
    now = _now()
    b = (x509.CertificateBuilder()
         .subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before or now - DAY).not_valid_after(not_after or now + VALID_DAYS * DAY)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                      content_commitment=False, key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if hosts:
        b = b.add_extension(_san(hosts), critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


class Pki:
    """The files of one throw-away PKI in `directory`; client certificates are made on first request."""

    def __init__(self, directory, hosts):
        self.dir = Path(directory)
        self.hosts = tuple(hosts)
        self._ca_key, self._ca_cert = _ca("bdmeter test CA")
        self.ca = _write_cert(self.dir / "ca.pem", self._ca_cert)
        _write_key(self.dir / "ca.key", self._ca_key)
        key, cert = leaf(self._ca_key, self._ca_cert, self.hosts[0] if self.hosts else "server", True, self.hosts)
        self.server_cert = _write_cert(self.dir / "server.pem", cert)
        self.server_key = _write_key(self.dir / "server.key", key)
        other_key, other_cert = _ca("bdmeter unrelated CA")
        self.other_ca = _write_cert(self.dir / "other-ca.pem", other_cert)
        self._clients = {}
        self._expired = None

    def client(self, name):
        """(cert_path, key_path) of a client certificate with CN=name, signed by the CA."""
        if name not in self._clients:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            key, cert = leaf(self._ca_key, self._ca_cert, name, False)
            self._clients[name] = (_write_cert(self.dir / ("client-%s.pem" % safe), cert),
                                   _write_key(self.dir / ("client-%s.key" % safe), key))
        return self._clients[name]

    def expired_server(self):
        """(cert_path, key_path) of a server certificate for the same hosts whose validity ended yesterday."""
        if self._expired is None:
            now = _now()
            key, cert = leaf(self._ca_key, self._ca_cert, self.hosts[0] if self.hosts else "server", True,
                              self.hosts, not_before=now - 30 * DAY, not_after=now - DAY)
            self._expired = (_write_cert(self.dir / "server-expired.pem", cert),
                             _write_key(self.dir / "server-expired.key", key))
        return self._expired


def make_pki(directory, clients=("860000000000001",), hosts=("127.0.0.1", "localhost")):
    """Make a CA, a server certificate for `hosts`, client certificates for `clients` and an unrelated CA."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    pki = Pki(directory, hosts)
    for name in clients:
        pki.client(name)
    return pki
