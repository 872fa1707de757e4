"""TCP sockets of a Quectel module in buffer access mode (QIOPEN/QISEND/QIRD), as async byte streams."""

import asyncio

from atengine import ATError, ATTimeout
from mpcompat import const, ticks_diff, ticks_ms

_CHUNK = const(1460)  # QISEND takes at most 1460 bytes
_READ_REQ = const(1500)  # QIRD hands out at most 1500 bytes
_MAX_ID = const(12)

try:
    _wait_for_ms = asyncio.wait_for_ms
    _sleep_ms = asyncio.sleep_ms
except AttributeError:  # CPython

    def _wait_for_ms(aw, ms):
        return asyncio.wait_for(aw, ms / 1000)

    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


class ModemError(Exception):
    """The modem could not do what was asked (the reason is the message; `code`: the module's, if any)."""

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.code = code


class NetworkError(ModemError):
    """The network is not usable: not registered, PDP context lost or refused."""


class ServerError(ModemError):
    """The server is unreachable or refuses us while the network and the module are healthy."""


# Quectel TCP/IP result codes (+QIOPEN URC, AT+QIGETERROR), as the TCP/IP AT commands manual names them
_IP_ERRORS = {550: "unknown error", 551: "operation blocked", 552: "invalid parameters", 553: "memory not enough",
              554: "create socket failed", 555: "operation not supported", 556: "socket bind failed",
              557: "socket listen failed", 558: "socket write failed", 559: "socket read failed",
              560: "socket accept failed", 561: "open PDP context failed", 562: "close PDP context failed",
              563: "socket identity used", 564: "DNS busy", 565: "DNS parse failed (host name not resolved)",
              566: "connection refused or peer unreachable", 567: "socket closed", 568: "operation busy",
              569: "operation timed out (no answer from the peer)", 570: "PDP context broken down",
              571: "cancel send", 572: "operation not allowed", 573: "APN not configured", 574: "port busy"}
PEER_CODES = (565, 566, 567, 569)  # the peer refused, did not answer or did not resolve: the server's side
NETWORK_CODES = (561, 570, 573)  # the context is gone or cannot be had: the network's side


def ip_error_text(code):
    """'connection refused or peer unreachable (module error 566)' for a Quectel TCP/IP code."""
    if code is None:
        return "no result code"
    return "%s (module error %s)" % (_IP_ERRORS.get(code, "error"), code)


class Socket:
    """One TCP connection through the module: write, read, close.

    read() returns data as soon as some is there, b"" once the connection is
    closed (by the peer, the network or a module restart) and drained, and
    None when nothing arrived within the time limit. A TLS socket
    (lib/quectel_ssl.py) is the same with the module's SSL commands.
    """

    SEND = "AT+QISEND=%d,%d"
    RECV = "AT+QIRD=%d,%d"
    RECV_HEADER = "+QIRD:"
    CLOSE = "AT+QICLOSE=%d"
    OPEN_URC = "+QIOPEN: %d,"
    tls = False

    def __init__(self, modem, sid):
        self._m = modem
        self._stale = modem._stale  # ids that need this kind's close command before they are used again
        self.id = sid
        self._rx = b""
        self._pending = False  # the module announced data that QIRD has not drained yet
        self._closed = False
        self.peer_closed = False  # closed by the peer (+QIURC "closed"), not by a lost context or restart
        self.opening = False
        self._ev = asyncio.Event()

    @property
    def closed(self):
        return self._closed

    # -- URC side (called from the AT reader; quick, no I/O) ------------------------
    def _on_recv(self):
        self._pending = True
        self._ev.set()

    def _on_closed(self):
        self.peer_closed = True
        if not self._closed:
            self._closed = True
            self._stale.add(self.id)  # the id must be closed (QICLOSE / QSSLCLOSE) before reuse
        self._ev.set()

    def _on_lost(self):
        # PDP gone or module restarted: the module's buffer is gone too.
        self._closed = True
        self._pending = False
        self._ev.set()

    # -- stream ----------------------------------------------------------------------
    async def write(self, data):
        """Send all of `data` (chunks of at most 1460 bytes); ModemError when the socket is closed or stuck."""
        m = self._m
        mv = memoryview(data)
        off = 0
        while off < len(mv):
            if self._closed:
                raise ModemError("socket %d closed" % self.id)
            chunk = mv[off:off + _CHUNK]
            fails = 0
            while True:
                try:
                    await m.at.cmd(self.SEND % (self.id, len(chunk)), m.timeouts["cmd"], payload=chunk)
                    break
                except ATTimeout:
                    self._drop()  # how much of the chunk went out is unknown: the stream cannot continue
                    raise
                except ATError as e:
                    if e.final != "SEND FAIL":
                        self._drop()
                        raise ModemError("socket %d: send refused (%s)" % (self.id, e.final))
                    m._stats["send_fail"] += 1
                    fails += 1
                    if fails > m.send_retries:
                        self._drop()  # part of the stream is lost: the stream cannot continue
                        raise ModemError("socket %d: send buffer stays full" % self.id)
                    # The module's send buffer is full: give the network time to drain it.
                    await _sleep_ms(min(m.send_backoff_ms << (fails - 1), 5000))
            off += len(chunk)
            m._stats["bytes_tx"] += len(chunk)

    async def read(self, n=_CHUNK, timeout_ms=None):
        """Up to n bytes; b"" when closed and drained; None after timeout_ms (default: the driver's 'read')."""
        m = self._m
        limit = m.timeouts["read"] if timeout_ms is None else timeout_ms
        t0 = ticks_ms()
        while True:
            if self._rx:
                return self._take(n)
            if self._pending:
                self._pending = False  # a recv URC during the QIRD sets it again
                try:
                    data = await m.at.read_data(self.RECV % (self.id, _READ_REQ), m.timeouts["cmd"],
                                                prefix=self.RECV_HEADER)
                except ATError:
                    data = b""  # the id is gone: whatever is left went with it
                    self._on_closed()
                except BaseException:
                    self._pending = True
                    raise
                if data:
                    self._pending = True  # keep draining until +QIRD: 0 (no new URC before that)
                    m._stats["bytes_rx"] += len(data)
                    self._rx = data
                continue
            if self._closed:
                return b""
            left = limit - ticks_diff(ticks_ms(), t0)
            if left <= 0:
                return None
            self._ev.clear()
            if self._pending or self._closed:
                continue
            try:
                await _wait_for_ms(self._ev.wait(), left)
            except asyncio.TimeoutError:
                pass

    def _take(self, n):
        rx = self._rx
        if len(rx) <= n:
            self._rx = b""
            return rx
        self._rx = rx[n:]
        return rx[:n]

    def _drop(self):
        if not self._closed:
            self._closed = True
            self._stale.add(self.id)
        self._ev.set()

    def close(self):
        """Close now; the module's id is released (QICLOSE) before it is next used."""
        self._drop()
        if self._m._sockets.get(self.id) is self:
            del self._m._sockets[self.id]

    async def aclose(self):
        """Close and release the module's id at once."""
        self.close()
        await self._m._close_id(self.id)


async def open_tcp(m, host, port, timeout_ms, label="peer"):
    """AT+QIOPEN in buffer mode and wait for +QIOPEN: <id>,0; a stale id is closed first (563).

    ModemError (with the module's code) when it fails; the wait ends at once when the socket is lost
    meanwhile (context deactivated, module restarted), since a module may then report nothing for it.
    """
    return await open_id(m, Socket, lambda sid: 'AT+QIOPEN=%d,%d,"TCP","%s",%d,0,0' % (m.ctx, sid, host, port),
                         host, port, timeout_ms, label)


async def open_id(m, cls, command, host, port, timeout_ms, label):
    """Open a socket of class `cls` (TCP or TLS) on a free id with `command(sid)`; see open_tcp."""
    sid = 0
    while sid in m._sockets:
        sid += 1
    if sid >= _MAX_ID:
        raise ModemError("no free socket id")
    err = None
    for _ in range(2):
        await m._close_id(sid)
        s = cls(m, sid)
        m._sockets[sid] = s  # before the open: data may be announced right after the open URC
        m._stats["opens"] += 1
        ok = False
        s.opening = True
        try:
            # OK comes at once; the result URC may take up to timeout_ms
            lines = await m.at.cmd(command(sid), min(timeout_ms, m.timeouts["cmd"]), expect=cls.OPEN_URC % sid,
                                   expect_timeout_ms=timeout_ms)
            if not lines[-1]:  # abandoned: the socket was lost while opening
                m._stats["open_fail"] += 1
                raise NetworkError("%s %s:%d: socket lost while opening (context or module gone)"
                                   % (label, host, port))
            err = int(lines[-1].rpartition(",")[2])
            ok = err == 0
        except ATError as e:
            err = e.code
        finally:
            s.opening = False
            if not ok:
                m._sockets.pop(sid, None)
                s._stale.add(sid)  # a failed open also needs its close command before the id is reused
        if ok:
            return s
        m._stats["open_fail"] += 1
        if err != 563:
            break
    raise ModemError("%s %s:%d: %s" % (label, host, port, ip_error_text(err)), err)
