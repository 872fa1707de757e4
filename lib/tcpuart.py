"""A UART stand-in for the MicroPython unix port: a TCP connection to host:port.

It offers what the drivers use of `machine.UART`: non-blocking `read`,
`readinto`, `write` and `any`, and it works with `asyncio.StreamReader`.
Polling is done by the kernel on the real socket (the stream ioctl hands the
file descriptor to `select.poll`), so an idle port costs no CPU.

A real UART never goes away, so a lost peer connection is hidden: reads
return None (no data) and the link is re-dialled, at most once per
`retry_ms`, on the next read or write. While it is down, polls wait on an
idle listening socket that never becomes ready; callers bound their waits
anyway, and their next read re-dials.
"""

import errno
import select
import socket
import time

try:
    from micropython import const
except ImportError:  # CPython, for the host-side tests
    def const(x):
        return x

_STREAM_POLL = const(3)
_STREAM_CLOSE = const(4)
_STREAM_GET_FILENO = const(10)
_POLLIN = const(1)
_POLLOUT = const(4)
_POLLERR = const(8)
_POLLHUP = const(16)
_IPPROTO_TCP = const(6)
_TCP_NODELAY = const(1)

try:
    from io import IOBase
except ImportError:  # pragma: no cover - CPython has it in io too
    IOBase = object


def parse_endpoint(text):
    """'127.0.0.1:7001' -> ('127.0.0.1', 7001); ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("endpoint must be host:port, got %r" % (text,))
    return host, int(port)


class TcpUart(IOBase):
    """machine.UART-like byte stream over TCP that reconnects by itself."""

    def __init__(self, endpoint, retry_ms=500):
        self.host, self.port = parse_endpoint(endpoint)
        self.retry_ms = retry_ms
        self.connects = 0  # successful dials, for the heartbeat's counters
        self.drops = 0
        self._sock = None
        self._poll = select.poll()
        self._idle = None
        self._last_dial = None
        self._dial()

    # -- connection management -------------------------------------------
    def _dial(self):
        self._last_dial = time.ticks_ms()
        try:
            addr = socket.getaddrinfo(self.host, self.port)[0][-1]
            s = socket.socket()
            try:
                # A UART sends each byte as it is written: no Nagle coalescing (it would add ~40 ms per exchange)
                s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass
            s.setblocking(False)
            try:
                s.connect(addr)
            except OSError as e:
                if e.errno != errno.EINPROGRESS:
                    s.close()
                    raise
        except OSError:
            self._sock = None
            return False
        self._sock = s
        self._poll = select.poll()
        self._poll.register(s, _POLLIN)
        self.connects += 1
        return True

    def _drop(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.drops += 1

    def _ensure(self):
        if self._sock is None and time.ticks_diff(time.ticks_ms(), self._last_dial) >= self.retry_ms:
            self._dial()
        return self._sock

    def _idle_fd(self):
        # A bound, listening socket that nobody connects to: never readable.
        if self._idle is None:
            self._idle = socket.socket()
            self._idle.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
            self._idle.listen(1)
        return self._idle.fileno()

    @property
    def connected(self):
        return self._sock is not None

    # -- machine.UART interface ------------------------------------------
    def any(self):
        s = self._ensure()
        if s is None:
            return 0
        for _, ev in self._poll.poll(0):
            if ev & (_POLLERR | _POLLHUP):
                return 1  # let the next read notice the loss
            if ev & _POLLIN:
                return 1
        return 0

    def readinto(self, buf, nbytes=None):
        s = self._ensure()
        if s is None:
            return None
        mv = memoryview(buf)
        if nbytes is not None:
            mv = mv[:nbytes]
        try:
            n = s.readinto(mv)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return None
            self._drop()
            return None
        if n == 0:  # peer closed: a UART stays, so hide it and re-dial later
            self._drop()
            return None
        return n

    def read(self, nbytes=-1):
        if nbytes is None or nbytes < 0:
            nbytes = 512
        buf = bytearray(nbytes)
        n = self.readinto(buf)
        if n is None:
            return None
        return bytes(buf[:n])

    def write(self, buf):
        s = self._ensure()
        if s is None:
            return len(buf)  # a UART with nobody listening still transmits
        try:
            n = s.write(buf)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return 0
            self._drop()
            return len(buf)
        return len(buf) if n is None else n

    def flush(self):
        pass

    def close(self):
        self._drop()
        if self._idle is not None:
            self._idle.close()
            self._idle = None

    # -- stream protocol, for asyncio ------------------------------------
    def ioctl(self, req, arg):
        if req == _STREAM_GET_FILENO:
            s = self._ensure()
            return s.fileno() if s is not None else self._idle_fd()
        if req == _STREAM_POLL:
            ready = 0
            if arg & _POLLIN and self.any():
                ready |= _POLLIN
            if arg & _POLLOUT:
                ready |= _POLLOUT
            return ready
        if req == _STREAM_CLOSE:
            self.close()
            return 0
        return -1
