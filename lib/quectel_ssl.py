"""TLS sockets of a Quectel module (QSSLCFG, QSSLOPEN, QSSLSEND, QSSLRECV, QSSLCLOSE): the TCP Socket's interface.

The module does the TLS: the MCU only names the certificate files (uploaded
with lib/quectel_files.py) in an SSL context and opens, writes and reads as on
a TCP socket. The context's settings are volatile (lost at every RDY): the
driver keeps them in `Quectel.tls` and applies them again after a restart, at
bring-up or before the next open. When validity dates are checked
(`verify_time`) the module compares them with its own clock, so the caller sets
it (`set_clock`) from a trusted time first. Every certificate failure is the
module's error 566, a server-side failure when the network is healthy.
"""

from quectel_socket import ModemError, Socket, open_id

_FILE_ITEMS = ("cacert", "clientcert", "clientkey")
TLS12 = 3  # QSSLCFG "sslversion": 3 = TLS 1.2
ALL_CIPHERS = 0xFFFF


class SslSocket(Socket):
    """One TLS connection through the module (buffer access mode); write, read and close as Socket."""

    SEND = "AT+QSSLSEND=%d,%d"
    RECV = "AT+QSSLRECV=%d,%d"
    RECV_HEADER = "+QSSLRECV:"
    OPEN_URC = "+QSSLOPEN: %d,"
    tls = True

    def __init__(self, modem, sid):
        super().__init__(modem, sid)
        self._stale = modem._ssl_stale


def settings(ctx=1, cacert="", clientcert="", clientkey="", verify=True, verify_time=True, sni=True,
             sslversion=TLS12, ciphersuite=ALL_CIPHERS, negotiatetime=60):
    """An SSL context's settings: server verification with `cacert` (a module file name) when verify; the
    client certificate and key too when both are given (mutual TLS); dates against the module's clock when
    verify_time; the server name sent (SNI) when sni."""
    if verify and not cacert:
        raise ValueError("verification needs a CA certificate file")
    if bool(clientcert) != bool(clientkey):
        raise ValueError("a client certificate needs its key, and the key its certificate")
    level = 0
    if verify:
        level = 2 if clientcert else 1
    return {"ctx": ctx, "sslversion": sslversion, "ciphersuite": ciphersuite, "seclevel": level,
            "cacert": cacert, "clientcert": clientcert, "clientkey": clientkey,
            "ignorelocaltime": 0 if verify and verify_time else 1, "negotiatetime": negotiatetime,
            "sni": 1 if sni else 0}


def commands(tls):
    """The AT+QSSLCFG lines that set up the context `tls` (a dict from settings())."""
    ctx = tls["ctx"]
    out = ['AT+QSSLCFG="sslversion",%d,%d' % (ctx, tls["sslversion"]),
           'AT+QSSLCFG="ciphersuite",%d,0x%04X' % (ctx, tls["ciphersuite"]),
           'AT+QSSLCFG="seclevel",%d,%d' % (ctx, tls["seclevel"])]
    for item in _FILE_ITEMS:
        if tls[item]:
            out.append('AT+QSSLCFG="%s",%d,"%s"' % (item, ctx, tls[item]))
    for item in ("ignorelocaltime", "negotiatetime", "sni"):
        out.append('AT+QSSLCFG="%s",%d,%d' % (item, ctx, tls[item]))
    return out


def clock_command(utc):
    """AT+CCLK for a UTC (Y, M, D, h, m, s): the module's clock in UTC (zone +00)."""
    y, mo, d, h, mi, s = utc[:6]
    return 'AT+CCLK="%02d/%02d/%02d,%02d:%02d:%02d+00"' % (y % 100, mo, d, h, mi, s)


async def configure(m):
    """Apply the driver's SSL context (m.tls) to the module; it stays until the next RDY."""
    gen = m._gen
    for line in commands(m.tls):
        await m.at.cmd(line, m.timeouts["cmd"])
    m._tls_gen = gen


async def set_clock(m, utc):
    """Set the module's clock (a UTC tuple): it checks certificate dates against it."""
    await m.at.cmd(clock_command(utc), m.timeouts["cmd"])


async def open_ssl(m, host, port, timeout_ms, label="peer"):
    """AT+QSSLOPEN in buffer mode on the driver's SSL context and wait for +QSSLOPEN: <id>,0 (see open_tcp).

    The context is configured first when the module restarted since it last was. ModemError with the module's
    code when the open fails; for 566 the text says the certificate may be the cause.
    """
    tls = m.tls
    if tls is None:
        raise ModemError("%s %s:%d: no SSL context configured" % (label, host, port))
    if m._tls_gen != m._gen:
        await configure(m)
    try:
        return await open_id(m, SslSocket, lambda sid: 'AT+QSSLOPEN=%d,%d,%d,"%s",%d,0'
                             % (m.ctx, tls["ctx"], sid, host, port), host, port, timeout_ms, label)
    except ModemError as e:
        if e.code == 566:
            raise type(e)("%s %s:%d: TLS handshake failed (certificate not accepted, peer unreachable or "
                          "connection refused: module error 566)" % (label, host, port), 566)
        raise
