"""The modem simulator's TLS sockets: QSSLCFG, QSSLOPEN, QSSLSEND, QSSLRECV, QSSLCLOSE, QSSLSTATE over REAL TLS.

Each SSL socket opens a real TCP connection to its peer and runs a real TLS
handshake on it with Python's `ssl` (through memory BIOs, so every byte on
the wire is counted), using the certificate files uploaded to the simulated
module's file system (modem_files.py) as the SSL context names them. As on the
module: every certificate failure (unknown root, expired, wrong host, client
certificate refused) is `+QSSLOPEN: <id>,566`; 565 when the name does not
resolve; 569 when the handshake outlasts `negotiatetime`. With
`ignorelocaltime` 0 (default 1: dates ignored) validity is checked against the
module's own clock (AT+CCLK), so a module whose clock is wrong fails. Without
`sni` 1 (default 0) no server name is sent. Contexts are volatile: a restart
forgets them. Buffer access mode only (mode 0); other modes are refused.
"""

import asyncio
import ipaddress
import os
import ssl
import tempfile

from cryptography import x509

from tools.sim.modem_net import MAX_READ, SimSocket

_MAX_CTX = 5
_CERT_FAIL = 566
_TIMEOUT = 569
_NO_CHECK_TIME = 0x200000  # OpenSSL X509_V_FLAG_NO_CHECK_TIME: dates are checked here, on the module's clock
CTX_DEFAULTS = {"sslversion": 4, "ciphersuite": 0xFFFF, "seclevel": 0, "cacert": "", "clientcert": "",
                "clientkey": "", "ignorelocaltime": 1, "negotiatetime": 300, "sni": 0}
_RANGES = {"sslversion": (0, 4), "seclevel": (0, 2), "ignorelocaltime": (0, 1), "negotiatetime": (10, 300),
           "sni": (0, 1)}
# cipher suite code -> OpenSSL name (TLS 1.2 and older; the modules' lists)
CIPHERS = {0x0035: "AES256-SHA", 0x002F: "AES128-SHA", 0x003D: "AES256-SHA256", 0x003C: "AES128-SHA256",
           0xC013: "ECDHE-RSA-AES128-SHA", 0xC014: "ECDHE-RSA-AES256-SHA", 0xC027: "ECDHE-RSA-AES128-SHA256",
           0xC028: "ECDHE-RSA-AES256-SHA384", 0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
           0xC030: "ECDHE-RSA-AES256-GCM-SHA384", 0xC009: "ECDHE-ECDSA-AES128-SHA",
           0xC00A: "ECDHE-ECDSA-AES256-SHA", 0xC023: "ECDHE-ECDSA-AES128-SHA256",
           0xC024: "ECDHE-ECDSA-AES256-SHA384", 0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
           0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384"}
_VERSIONS = {0: (ssl.TLSVersion.SSLv3, ssl.TLSVersion.SSLv3), 1: (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1),
             2: (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1), 3: (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
             4: (ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_2)}


class TLSFailure(Exception):
    """The handshake or a certificate check failed (the module says 566 for all of them)."""


def _host_ok(cert, host):
    """The leaf certificate names `host` (an IP address SAN, or a DNS SAN with one leading wildcard)."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return ip in names.get_values_for_type(x509.IPAddress)
    host = host.lower().rstrip(".")
    for name in names.get_values_for_type(x509.DNSName):
        name = name.lower()
        if name == host or (name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]):
            return True
    return False


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class SimSslSocket(SimSocket):
    """A module SSL client: a real TCP connection with a real TLS client on memory BIOs."""

    OPEN_URC = "+QSSLOPEN"
    URC = "+QSSLURC"

    def __init__(self, sid, host, port, ctx_id, cfg):
        super().__init__(sid, host, port)
        self.ctx_id = ctx_id
        self.cfg = dict(cfg)
        self.obj = None
        self.inbio = ssl.MemoryBIO()
        self.outbio = ssl.MemoryBIO()
        self.hs_up = 0  # handshake bytes on the wire, each way
        self.hs_down = 0
        self.hs_flights = []  # (direction "up"/"down", bytes) of each handshake flight, in order
        self.failure = None  # why the handshake failed (the simulator's log; the module only says 566)
        self.version = None
        self.cipher = None

    async def open(self, sim):
        err = await self._open(sim)
        sim.stats["tls_hs_up"] = self.hs_up
        sim.stats["tls_hs_down"] = self.hs_down
        sim.stats["tcp_bytes_up"] += self.hs_up
        sim.stats["tcp_bytes_down"] += self.hs_down
        sim.tls_log.append({"id": self.id, "host": self.host, "port": self.port, "err": err,
                            "failure": self.failure, "version": self.version, "cipher": self.cipher,
                            "hs_up": self.hs_up, "hs_down": self.hs_down})
        return err

    async def _open(self, sim):
        err = await super().open(sim)
        if err:
            return err
        try:
            ctx = self._context(sim)
        except (ssl.SSLError, OSError, ValueError, TLSFailure) as e:
            self.failure = "context: %s" % e
            return _CERT_FAIL
        name = self.host if self.cfg["sni"] and not _is_ip(self.host) else None
        self.obj = ctx.wrap_bio(self.inbio, self.outbio, server_side=False, server_hostname=name)
        try:
            await asyncio.wait_for(self._handshake(), self.cfg["negotiatetime"])
            self._check_peer(sim)
        except asyncio.TimeoutError:
            self.failure = "handshake timed out"
            return _TIMEOUT
        except (ssl.SSLError, TLSFailure, ConnectionError, OSError, EOFError) as e:
            self.failure = str(e) or type(e).__name__
            return _CERT_FAIL
        self.version = self.obj.version()
        self.cipher = self.obj.cipher()[0]
        return 0

    def _context(self, sim):
        cfg = self.cfg
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # checked in _check_peer: the name is sent (SNI) only when configured
        ctx.minimum_version, ctx.maximum_version = _VERSIONS[cfg["sslversion"]]
        if cfg["ciphersuite"] != 0xFFFF:
            ctx.set_ciphers(CIPHERS[cfg["ciphersuite"]])
        if cfg["seclevel"] == 0:
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ca = sim.file(cfg["cacert"]) if cfg["cacert"] else None
        if not ca:
            raise TLSFailure("CA certificate file %r not on the module" % cfg["cacert"])
        ctx.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        ctx.verify_flags |= _NO_CHECK_TIME
        if cfg["seclevel"] == 2:
            cert = sim.file(cfg["clientcert"]) if cfg["clientcert"] else None
            key = sim.file(cfg["clientkey"]) if cfg["clientkey"] else None
            if not cert or not key:
                raise TLSFailure("client certificate or key file not on the module")
            with tempfile.TemporaryDirectory() as d:
                paths = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
                for path, data in zip(paths, (cert, key)):
                    with open(path, "wb") as f:
                        f.write(data)
                ctx.load_cert_chain(*paths)
        return ctx

    def _flush(self):
        data = self.outbio.read()
        if data:
            self.writer.write(data)
        return len(data)

    def _sent(self, n):
        self.hs_up += n
        if n:
            self.hs_flights.append(("up", n))

    async def _handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self._sent(self._flush())
                return
            except ssl.SSLWantReadError:
                self._sent(self._flush())
            data = await self.reader.read(16384)
            if not data:
                raise ConnectionError("the server closed the connection during the handshake")
            self.hs_down += len(data)
            if self.hs_flights and self.hs_flights[-1][0] == "down":
                self.hs_flights[-1] = ("down", self.hs_flights[-1][1] + len(data))
            else:
                self.hs_flights.append(("down", len(data)))
            self.inbio.write(data)

    def _check_peer(self, sim):
        if self.cfg["seclevel"] == 0:
            return
        leaf = x509.load_der_x509_certificate(self.obj.getpeercert(binary_form=True))
        if not _host_ok(leaf, self.host):
            raise TLSFailure("certificate does not name %s" % self.host)
        if not self.cfg["ignorelocaltime"]:
            now = sim.module_utc()
            certs = [leaf] + x509.load_pem_x509_certificates(sim.file(self.cfg["cacert"]))
            for c in certs:
                if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
                    raise TLSFailure("certificate %s not valid at the module's time %s"
                                     % (c.subject.rfc4514_string(), now.isoformat()))

    def wire_in(self, data):
        self.inbio.write(data)
        out = bytearray()
        while True:
            try:
                chunk = self.obj.read(16384)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                raise EOFError("close_notify") from None
            except ssl.SSLError as e:
                raise OSError(str(e)) from None
            if not chunk:
                break
            out += chunk
        self._flush()
        return bytes(out)

    def wire_out(self, payload):
        self.obj.write(payload)
        return self._flush()


class SslMixin:
    """QSSLCFG, QSSLOPEN, QSSLSEND, QSSLRECV, QSSLCLOSE, QSSLSTATE for ModemSim (sockets share the QIOPEN ids)."""

    def _init_ssl(self):
        self.sslcfg = {}  # ctx -> settings; volatile
        self.tls_log = []  # (id, host, port, result, detail) of every SSL open

    def _ssl_restart(self):
        self.sslcfg = {}

    def _ssl_ctx(self, ctx):
        return self.sslcfg.setdefault(ctx, dict(CTX_DEFAULTS))

    async def _at_qsslcfg(self, kind, args):
        if kind != "set" or len(args) < 2 or args[0].lower() not in CTX_DEFAULTS or not 0 <= int(args[1]) <= _MAX_CTX:
            self._respond(final=self._err(50))
            return
        item, ctx = args[0].lower(), int(args[1])
        cfg = self._ssl_ctx(ctx)
        if len(args) == 2:
            v = cfg[item]
            shown = "0x%04X" % v if item == "ciphersuite" else ('"%s"' % v if isinstance(v, str) else str(v))
            self._respond(['+QSSLCFG: "%s",%d,%s' % (item, ctx, shown)])
            return
        raw = args[2]
        if item in ("cacert", "clientcert", "clientkey"):
            cfg[item] = raw
        elif item == "ciphersuite":
            v = int(raw, 16)
            if v != 0xFFFF and v not in CIPHERS:
                self._respond(final=self._err(50))
                return
            cfg[item] = v
        else:
            v = int(raw)
            lo, hi = _RANGES[item]
            if not lo <= v <= hi:
                self._respond(final=self._err(50))
                return
            cfg[item] = v
        self._respond()

    async def _at_qsslopen(self, kind, args):
        if kind != "set" or len(args) < 5:
            self._respond(final=self._err(50))
            return
        ctx, sid, host, port = int(args[1]), int(args[2]), args[3], int(args[4])
        mode = int(args[5]) if len(args) > 5 else 0
        if not 0 <= sid <= 11 or not 0 <= ctx <= _MAX_CTX or mode != 0:
            self._respond(final=self._err(50))  # buffer access mode only
            return
        self._respond()
        if sid in self.sockets:
            self._urc("+QSSLOPEN: %d,563" % sid)
            return
        s = SimSslSocket(sid, host, port, ctx, self._ssl_ctx(ctx))
        self.sockets[sid] = s
        asyncio.ensure_future(self._connect(s, self._gen))

    def _ssl_sock(self, args):
        s = self.sockets.get(int(args[0])) if args else None
        return s if isinstance(s, SimSslSocket) else None

    async def _at_qsslsend(self, kind, args):
        self._expect_data(self._ssl_sock(args), int(args[1]) if len(args) > 1 else -1)

    async def _at_qsslrecv(self, kind, args):
        s = self._ssl_sock(args)
        if s is None:
            self._respond(final="ERROR")
            return
        self._read_out(s, int(args[1]) if len(args) > 1 else MAX_READ, "+QSSLRECV")

    async def _at_qsslclose(self, kind, args):
        s = self._ssl_sock(args)
        if s is not None:
            del self.sockets[s.id]
            s.dead = True
            s.close_conn()
            await self._sleep(self._d("qiclose"))
        self._respond()

    async def _at_qsslstate(self, kind, args):
        socks = [s for s in self.sockets.values() if isinstance(s, SimSslSocket)
                 and (not args or int(args[0]) == s.id)]
        codes = {"opening": 1, "connected": 2, "closed": 4}
        self._respond(['+QSSLSTATE: %d,"SSLClient","%s",%d,0,%d,1,%d,0,"uart1",%d'
                       % (s.id, s.host, s.port, codes[s.state], s.id, s.ctx_id) for s in socks])

