"""The modem simulator's packet side: APN, PDP context and TCP sockets bridged to real host connections.

Buffer access mode as on Quectel modules: data from the real peer is kept in
the module and announced once with `+QIURC: "recv",<id>` until QIRD has
drained it (`+QIRD: 0`); QISEND takes exactly the announced byte count after
the `> ` prompt; a peer close gives `+QIURC: "closed",<id>` and the id stays
taken until QICLOSE (else 563). Byte counters measure the data cost.
"""

import asyncio
import socket

MAX_SEND = 1460
MAX_READ = 1500
CONNECT_TIMEOUT_S = 5.0


def nodelay(writer):
    # Echo, prompt and result go out as separate writes: without this, Nagle and delayed ACKs add ~40 ms.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def split_args(text):
    """'1,0,"TCP","a,b",80' -> ['1', '0', 'TCP', 'a,b', '80'] (quotes removed, commas inside quotes kept)."""
    out, cur, quoted, was_quoted = [], [], False, False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            was_quoted = True
        elif ch == "," and not quoted:
            out.append("".join(cur) if was_quoted else "".join(cur).strip())
            cur, was_quoted = [], False
        else:
            cur.append(ch)
    if cur or out or was_quoted:
        out.append("".join(cur) if was_quoted else "".join(cur).strip())
    return out


class SimSocket:
    """One TCP socket of the module; SimSslSocket (modem_ssl.py) puts TLS on it."""

    OPEN_URC = "+QIOPEN"
    URC = "+QIURC"

    def __init__(self, sid, host, port):
        self.id = sid
        self.host = host
        self.port = port
        self.state = "opening"  # connected | closed
        self.reader = None
        self.writer = None
        self.pump = None
        self.rx = bytearray()
        self.announced = False
        self.dead = False  # closed silently (PDP gone, module restart): no closed URC
        self.deact = False  # its context was deactivated (QIDEACT, network, CFUN 0) while it existed
        self.total_rx = 0
        self.total_read = 0
        self.total_tx = 0

    async def open(self, sim):
        """Connect to the real peer; 0 or the module's error code (565 DNS, 566 refused or unreachable)."""
        try:
            await asyncio.get_running_loop().getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return 565
        try:
            self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                              CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            return 566
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return 0

    def wire_in(self, data):
        """Bytes from the peer -> the payload they carry (raises EOFError when the peer ended the stream)."""
        return data

    def wire_out(self, payload):
        """Send a payload to the peer; returns the bytes that went on the wire."""
        self.writer.write(payload)
        return len(payload)

    def close_conn(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.pump is not None:
            self.pump.cancel()
            self.pump = None


class NetMixin:
    """QICSGP, QIACT, QIDEACT, QIOPEN, QICLOSE, QISEND, QIRD, QISTATE, QIGETERROR for ModemSim."""

    last_error = 0

    def _drop_sockets(self, urc):
        for s in list(self.sockets.values()):
            if urc and s.state == "connected":
                self._urc('%s: "closed",%d' % (s.URC, s.id))
            s.dead = True
            s.deact = True
            s.state = "closed"
            s.close_conn()
        if not urc:
            self.sockets.clear()

    def _peer_closed(self, s):
        if s.state == "closed":
            return
        s.state = "closed"
        s.close_conn()
        if not s.dead:
            self._urc('%s: "closed",%d' % (s.URC, s.id))

    async def _pump(self, s):
        try:
            while True:
                data = await s.reader.read(4096)
                if not data:
                    break
                self.stats["tcp_bytes_down"] += len(data)
                data = s.wire_in(data)
                if not data:
                    continue
                s.rx += data
                s.total_rx += len(data)
                if not s.announced:
                    s.announced = True
                    self._urc('%s: "recv",%d' % (s.URC, s.id))
        except (ConnectionError, OSError, EOFError):
            pass
        except asyncio.CancelledError:
            return
        s.pump = None
        self._peer_closed(s)

    def _tcp_sock(self, args):
        # TCP and SSL sockets share the ids; QISEND/QIRD do not reach an SSL one (that takes QSSLSEND/QSSLRECV)
        s = self.sockets.get(int(args[0])) if args else None
        return s if s is not None and s.URC == SimSocket.URC else None

    async def _at_qicsgp(self, kind, args):
        if kind == "query" or len(args) == 1:
            apn, user, pwd, auth = self.apn
            self._respond(['+QICSGP: 1,"%s","%s","%s",%d' % (apn, user, pwd, auth)])
            return
        if len(args) < 3:
            self._respond(final=self._err(50))
            return
        self.apn = (args[2], args[3] if len(args) > 3 else "", args[4] if len(args) > 4 else "",
                    int(args[5]) if len(args) > 5 else 0)
        self._respond()

    async def _at_qiact(self, kind, args):
        if kind == "query":
            lines = ['+QIACT: 1,1,1,"%s"' % self.ip] if self.pdp == "active" else []
            self._respond(lines)
            return
        gen = self._gen
        await self._sleep(self._d("qiact"))
        if gen != self._gen:
            return  # restarted meanwhile: the answer is lost
        if self.cfun != 1 or self._reg_stat() not in (1, 5) or self.pdp == "active":
            self.stats["qiact_refused"] += 1
            self._respond(final="ERROR")
        elif self.apn_required and self.apn[0] != self.apn_required:
            # a private-APN SIM: the network rejects activation on any other APN (QICSGP is lost on restart)
            self.stats["qiact_refused"] += 1
            self._respond(final="ERROR")
        elif self.pdp == "broken":
            self._respond(final=self._err(572))  # the old context must be deactivated first
        else:
            self.pdp = "active"
            self.ip = "10.%d.%d.%d" % (self.rng.randint(0, 255), self.rng.randint(0, 255), self.rng.randint(1, 254))
            self._respond()

    async def _at_qideact(self, kind, args):
        gen = self._gen
        await self._sleep(self._d("qideact"))
        if gen != self._gen:
            return
        self.stats["qideact"] += 1
        self._drop_sockets(urc=False)
        self.pdp = "inactive"
        self.ip = None
        self._respond()

    async def _at_qiopen(self, kind, args):
        if len(args) < 5:
            self._respond(final=self._err(50))
            return
        sid, proto, host, port = int(args[1]), args[2].upper(), args[3], int(args[4])
        if not 0 <= sid <= 11 or proto != "TCP":
            self._respond(final=self._err(50))
            return
        self._respond()
        if sid in self.sockets:
            self._urc("+QIOPEN: %d,563" % sid)
            return
        s = SimSocket(sid, host, port)
        self.sockets[sid] = s
        asyncio.ensure_future(self._connect(s, self._gen))

    async def _connect(self, s, gen):
        await self._sleep(self._d("qiopen"))
        err = 0
        if self.pdp != "active":
            err = 570 if self.pdp == "broken" else 571
        elif "stack_degraded" in self.faults:
            err = 554  # the module's own IP stack cannot create the socket (nothing reached the peer)
        else:
            err = await s.open(self)
        if gen == self._gen and s.deact and not self.silent_open_on_deact:
            s.state = "closed"
            s.close_conn()
            self.last_error = 570
            self.stats["qiopen_fail"] += 1
            self._urc("%s: %d,570" % (s.OPEN_URC, s.id))  # the context went away while it was opening
            return
        if gen != self._gen or self.sockets.get(s.id) is not s or s.dead:
            s.close_conn()  # restarted, closed, or (silent_open_on_deact) deactivated meanwhile: no result
            return
        if err:
            s.state = "closed"
            s.close_conn()
            self.last_error = err
            self.stats["qiopen_fail"] += 1
            self._urc("%s: %d,%d" % (s.OPEN_URC, s.id, err))
            return
        s.state = "connected"
        self.stats["qiopen_ok"] += 1
        self._urc("%s: %d,0" % (s.OPEN_URC, s.id))
        s.pump = asyncio.ensure_future(self._pump(s))

    async def _at_qiclose(self, kind, args):
        s = self.sockets.pop(int(args[0]), None) if args else None
        if s is not None:
            s.dead = True
            s.close_conn()
            await self._sleep(self._d("qiclose"))
        self._respond()

    async def _at_qisend(self, kind, args):
        if not args:
            self._respond(final="ERROR")
            return
        s = self._tcp_sock(args)
        if len(args) > 1 and int(args[1]) == 0:
            if s is None:
                self._respond(final="ERROR")
            else:
                self._respond(["+QISEND: %d,%d,0" % (s.total_tx, s.total_tx)])
            return
        self._expect_data(s, int(args[1]) if len(args) > 1 else -1)

    def _expect_data(self, s, n):
        """A buffer-mode send (QISEND, QSSLSEND): the `> ` prompt, then exactly `n` bytes go to socket `s`."""
        if s is None or s.state != "connected" or not 0 < n <= MAX_SEND:
            self._respond(final="ERROR")
            return
        self._data_need = (n, lambda payload: self._send_done(s.id, payload))
        self._out(b"\r\n> ")

    def _send_done(self, sid, payload):
        s = self.sockets.get(sid)
        left = self.faults.get("send_fail")
        if s is None or s.state != "connected" or s.writer is None:
            self._respond(final="SEND FAIL" if s is not None else "ERROR")
            return
        if left:
            self.stats["send_fail"] += 1
            if left <= 1:
                self.faults.pop("send_fail")
            else:
                self.faults["send_fail"] = left - 1
            self._respond(final="SEND FAIL")
            return
        self.stats["tcp_bytes_up"] += s.wire_out(payload)
        s.total_tx += len(payload)
        self._respond(final="SEND OK")

    async def _at_qird(self, kind, args):
        s = self._tcp_sock(args)
        if s is None:
            self._respond(final="ERROR")
            return
        n = int(args[1]) if len(args) > 1 else MAX_READ
        if n == 0:
            self._respond(["+QIRD: %d,%d,%d" % (s.total_rx, s.total_read, len(s.rx))])
            return
        self._read_out(s, n, "+QIRD")

    def _read_out(self, s, n, tag):
        """Answer a buffer-mode read (QIRD, QSSLRECV): up to `n` received bytes, or `<tag>: 0` when drained."""
        n = min(n, MAX_READ)
        data = bytes(s.rx[:n])
        del s.rx[:n]
        s.total_read += len(data)
        if not data:
            s.announced = False  # drained: the next data is announced again
            self._respond(["%s: 0" % tag])
            return
        self._respond(["%s: %d" % (tag, len(data))], raw=data)

    async def _at_qistate(self, kind, args):
        if kind == "set" and len(args) >= 2 and args[0] == "1":
            socks = [self.sockets[int(args[1])]] if int(args[1]) in self.sockets else []
        else:
            socks = list(self.sockets.values())
        codes = {"opening": 1, "connected": 2, "closed": 4}
        self._respond(['+QISTATE: %d,"TCP","%s",%d,0,%d,1,%d,0,"uart1"' % (s.id, s.host, s.port, codes[s.state],
                                                                             s.id) for s in socks])

    async def _at_qigeterror(self, kind, args):
        texts = {0: "operation successful", 554: "create socket failed", 566: "socket connect failed",
                 570: "PDP context broken down", 571: "PDP context not activated"}
        self._respond(["+QIGETERROR: %d,%s" % (self.last_error, texts.get(self.last_error, "unknown error"))])
