"""How the head-end's MQTT clients reach the broker: address, account, TLS with server verification, client certificate.

Every head-end process (`run`, `query`, `update`, `serve`) takes the same options:

    --broker HOST:PORT --mqtt-user NAME --mqtt-password-file FILE
    --mqtt-cafile CA.pem [--mqtt-certfile CERT.pem --mqtt-keyfile KEY.pem]

TLS is on when a CA is given; the broker's certificate must then be signed by it and name the host. The
password is read from a file (never a command-line argument: other users of the machine can read those)
and kept in a `Secret` that prints as `***`, so no log line, error or repr can show it.
"""

import argparse
import ssl

from tools.headend import args as types


class Secret:
    """A string that never shows itself: str() and repr() give `***`; `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def reveal(self):
        return self._value

    def __repr__(self):
        return "***"

    __str__ = __repr__


class Broker:
    """Where and how to connect: `host`, `port`, account and TLS files; `client(id)` makes a configured client.

    str() gives `host:port` (with ` TLS`), never the account's password.
    """

    def __init__(self, address="127.0.0.1:1883", user=None, password=None, cafile=None, certfile=None,
                 keyfile=None):
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
        self.host, self.port = host or "127.0.0.1", int(port) if port else 1883
        self.user = user
        self.password = password if password is None or isinstance(password, Secret) else Secret(password)
        self.cafile, self.certfile, self.keyfile = cafile, certfile, keyfile

    @property
    def tls(self):
        return self.cafile is not None

    def __str__(self):
        return "%s:%d%s" % (self.host, self.port, " TLS" if self.tls else "")

    __repr__ = __str__

    def client(self, client_id, **kw):
        """A paho client (callback API 2) with this broker's account and TLS settings; not yet connected."""
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **kw)
        if self.user is not None:
            c.username_pw_set(self.user, self.password.reveal() if self.password is not None else None)
        if self.tls:
            c.tls_set(ca_certs=str(self.cafile), certfile=self.certfile and str(self.certfile),
                      keyfile=self.keyfile and str(self.keyfile), cert_reqs=ssl.CERT_REQUIRED,
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        return c


def diagnose(broker, timeout_s=5.0):
    """Why a connection to `broker` does not get through, as text for an error message ("" when the socket and
    TLS handshake work): called after a bounded wait failed, never before it."""
    import socket

    b = as_broker(broker)
    try:
        raw = socket.create_connection((b.host, b.port), timeout=timeout_s)
    except OSError as e:
        return "cannot reach %s:%d: %s" % (b.host, b.port, e.strerror or e)
    with raw:
        if not b.tls:
            return ""
        ctx = ssl.create_default_context(cafile=str(b.cafile))
        if b.certfile:
            ctx.load_cert_chain(str(b.certfile), str(b.keyfile))
        try:
            with ctx.wrap_socket(raw, server_hostname=b.host) as tls:
                # under TLS 1.3 a server that wants a client certificate says so after the handshake
                tls.settimeout(1.0)
                try:
                    tls.recv(1)
                except socket.timeout:
                    pass
                return ""
        except ssl.SSLCertVerificationError as e:
            return "the broker's certificate is refused: %s" % e.verify_message
        except (ssl.SSLError, OSError) as e:
            return "TLS handshake with %s:%d failed: %s" % (b.host, b.port, getattr(e, "reason", None) or e)


def as_broker(broker):
    """A Broker from a Broker or a 'host:port' text (the plain, anonymous connection of before)."""
    return broker if isinstance(broker, Broker) else Broker(str(broker))


def add_options(p):
    """The account and TLS options of a command that connects to the broker."""
    p.add_argument("--mqtt-user", type=types.mqtt_user, metavar="NAME",
                   help="broker account (head-end accounts start with 'headend', docs/SECURITY.md)")
    p.add_argument("--mqtt-password-file", type=types.password_file, metavar="FILE",
                   help="file whose first line is the account's password (never given on the command line)")
    p.add_argument("--mqtt-cafile", type=types.pem_file("certificate"), metavar="CA.pem",
                   help="CA certificate(s) that signed the broker's certificate: turns TLS on")
    p.add_argument("--mqtt-certfile", type=types.pem_file("certificate"), metavar="CERT.pem",
                   help="client certificate for mutual TLS (with --mqtt-keyfile and --mqtt-cafile)")
    p.add_argument("--mqtt-keyfile", type=types.pem_file("private key"), metavar="KEY.pem",
                   help="the client certificate's private key")


def _refuse(option, text):
    return argparse.ArgumentError(None, "argument %s: %s" % (option, text))


def resolve(a, attr="broker"):
    """Replace `a.<attr>` (host:port) by a Broker with the account and TLS options checked together; raise
    argparse.ArgumentError naming the option when they do not fit. Nothing is connected."""
    if not hasattr(a, "mqtt_user") or getattr(a, attr, None) is None:
        return a
    if a.mqtt_password_file is not None and a.mqtt_user is None:
        raise _refuse("--mqtt-password-file", "needs --mqtt-user")
    if (a.mqtt_certfile is None) != (a.mqtt_keyfile is None):
        raise _refuse("--mqtt-certfile" if a.mqtt_keyfile is None else "--mqtt-keyfile",
                      "--mqtt-certfile and --mqtt-keyfile go together")
    if a.mqtt_certfile is not None:
        if a.mqtt_cafile is None:
            raise _refuse("--mqtt-certfile", "a client certificate needs TLS: give --mqtt-cafile too")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(a.mqtt_certfile, a.mqtt_keyfile)
        except (ssl.SSLError, OSError):
            raise _refuse("--mqtt-keyfile", "%s is not the key of %s" % (a.mqtt_keyfile, a.mqtt_certfile))
    if a.mqtt_cafile is not None:
        try:
            ssl.create_default_context(cafile=a.mqtt_cafile)
        except (ssl.SSLError, OSError):
            raise _refuse("--mqtt-cafile", "%s holds no usable CA certificate" % a.mqtt_cafile)
    setattr(a, attr, Broker(getattr(a, attr), a.mqtt_user, a.mqtt_password_file, a.mqtt_cafile,
                            a.mqtt_certfile, a.mqtt_keyfile))
    return a
