"""DL/T 645 bus master: one transaction at a time on an RS-485 UART, with bounded waits and counted retries.

Takes a `uart` (machine.UART on a board, tcpuart.TcpUart on the unix port)
and reads it through `asyncio.StreamReader`, so waiting costs no CPU. Before
each request it drains stray bytes and sends FE wake-up bytes; it waits at
most `timeout_ms` for the reply to start and `gap_ms` between characters once
a frame has begun. Corrupt replies and silence are retried; an abnormal reply
raises `dlt645.MeterError` at once; when every attempt failed the last kind of
failure is raised (`dlt645.Corrupt` or `dlt645.NoReply`). A read the caller
knows the meter refuses (`expect_refusal`) counts its "no such data" answer in
stats["refused"], not stats["abnormal"]: a known refusal is not an error.
"""

import asyncio
import time

import dlt645
from dlt645 import Corrupt, Incomplete, MeterError, NoReply

try:
    from micropython import const
except ImportError:  # CPython: importable for tooling, exercised under the unix port
    def const(x):
        return x

_BUF = const(512)  # a frame is at most 12 + 200 bytes; room for preamble and noise
_BITS_PER_CHAR = const(11)  # 8E1
_GAP_CHARS = const(5)
_GAP_SLACK_MS = const(25)  # TCP chunking on the unix port, scheduling on a board
_MAX_VALUE = const(1024)  # a follow-up sequence longer than this is nonsense
_MAX_DRAIN = const(64)  # reads per drain: a babbling line cannot hold the master forever
_DI_ADDRESS = const(0x04000401)  # communication address: present in every 2007 meter
_BAUDS = (2400, 1200, 4800, 9600)


class _Timeout(Exception):
    pass


class Master:
    """Bus master for DL/T 645 meters on one UART."""

    def __init__(self, uart, *, timeout_ms=1000, gap_ms=None, retries=2, preamble=4, de=None, baud=2400, log=None):
        self.uart = uart
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.preamble = b"\xfe" * preamble
        self.de = de
        self.log = log
        self._gap_ms = gap_ms
        self.baud = baud
        self._reader = asyncio.StreamReader(uart)
        self._buf = bytearray(_BUF)
        self._mv = memoryview(self._buf)
        self._lock = asyncio.Lock()
        self.stats = {"requests": 0, "replies": 0, "retries": 0, "timeouts": 0, "corrupt": 0, "abnormal": 0,
                      "refused": 0, "stray_bytes": 0, "bytes_tx": 0, "bytes_rx": 0}

    @property
    def gap_ms(self):
        """The inter-character timeout: given, or a few character times at the baud plus slack."""
        if self._gap_ms is not None:
            return self._gap_ms
        return _GAP_CHARS * _BITS_PER_CHAR * 1000 // self.baud + _GAP_SLACK_MS

    def wire_ms(self, nbytes):
        """Time `nbytes` take on the line at the current baud (8E1), in ms, rounded up."""
        return (nbytes * _BITS_PER_CHAR * 1000 + self.baud - 1) // self.baud

    # -- public operations -----------------------------------------------------
    async def read(self, address, di, expect_refusal=False):
        """One value by its DI, decoded with the DI table (kWh, V, A, kW, str...)."""
        return dlt645.value(di, await self.read_raw(address, di, expect_refusal))

    async def read_raw(self, address, di, expect_refusal=False):
        """The value bytes of a DI (0x33 removed), follow-up frames assembled.

        `expect_refusal`: the meter is known to lack this DI; its "no such data" answer still raises
        MeterError but is counted in stats["refused"] rather than stats["abnormal"].
        """
        async with self._lock:
            f = await self._transact(dlt645.read_request(address, di), address, dlt645.READ, di, 4,
                                     expect_refusal=expect_refusal)
            if not f.followup:
                return f.data[4:]
            out = bytearray(f.data[4:])
            seq = 1
            while True:
                if seq > 255 or len(out) > _MAX_VALUE:
                    raise Corrupt("follow-up sequence too long")
                f = await self._transact(dlt645.read_next_request(address, di, seq), address, dlt645.READ_NEXT,
                                         di, 4, seq)
                out += f.data[4:-1]
                if not f.followup:
                    return bytes(out)
                seq += 1

    async def read_1997(self, address, di):
        """One value of a DL/T 645-1997 meter (2-byte DI), decoded with the DI table."""
        async with self._lock:
            f = await self._transact(dlt645.read_1997_request(address, di), address, dlt645.READ_1997, di, 2)
            out = bytearray(f.data[2:])
            count = 0
            while f.followup:
                count += 1
                if count > 255 or len(out) > _MAX_VALUE:
                    raise Corrupt("follow-up sequence too long")
                f = await self._transact(dlt645.read_next_1997_request(address, di), address,
                                         dlt645.READ_NEXT_1997, di, 2)
                out += f.data[2:]
        return dlt645.value(di, bytes(out))

    async def read_address(self):
        """The address of the single meter on the bus (13 to AA..AA)."""
        async with self._lock:
            f = await self._transact(dlt645.read_address_request(), dlt645.WILDCARD, dlt645.READ_ADDRESS)
        if len(f.data) != 6:
            raise Corrupt("address reply with %d bytes" % len(f.data))
        return dlt645.decode_address(f.data)

    async def write(self, address, di, value, password="000000", level=2, operator="00000000"):
        """Write a DI's value bytes (14) with a password; MeterError if the meter refuses."""
        async with self._lock:
            await self._transact(dlt645.write_request(address, di, value, password, level, operator), address,
                                 dlt645.WRITE)

    async def discover(self, candidates=()):
        """Addresses that answer: the single meter's (13) with no list, else those of `candidates` present."""
        if not candidates:
            try:
                return [await self.read_address()]
            except (NoReply, Corrupt):  # nobody, or several meters talking at once
                return []
        found = []
        for a in candidates:
            try:
                await self.read_raw(a, _DI_ADDRESS)
            except MeterError:
                pass  # it answered, even if it refuses this item
            except (NoReply, Corrupt):
                continue
            found.append(a)
        return found

    async def probe_baud(self, set_baud, address=None):
        """Find the baud the meter answers at (2400, 1200, 4800, 9600); `set_baud(b)` reconfigures the UART."""
        retries = self.retries
        self.retries = 0
        try:
            for b in _BAUDS:
                set_baud(b)
                self.baud = b
                try:
                    if address:
                        await self.read_raw(address, _DI_ADDRESS)
                    else:
                        await self.read_address()
                except MeterError:
                    pass
                except (NoReply, Corrupt):
                    continue
                return b
        finally:
            self.retries = retries
        raise NoReply("no answer at any baud")

    async def broadcast_time(self, tm):
        """Broadcast time sync (08) to every meter; tm = (year, month, day, hour, minute, second). No reply."""
        async with self._lock:
            self.stats["requests"] += 1
            t_sent = await self._send(dlt645.time_sync_request(tm))
            # Leave the line quiet while meters take it in, so the next request is heard.
            wait = time.ticks_diff(t_sent, time.ticks_ms()) + self.gap_ms
            if wait > 0:
                await asyncio.sleep_ms(wait)

    # -- one transaction -----------------------------------------------------------
    async def _transact(self, request, address, function, di=None, di_len=4, seq=None, expect_refusal=False):
        """Send `request` and return its checked reply frame, retrying silence and corrupt replies."""
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
            self.stats["requests"] += 1
            t_sent = await self._send(request)
            try:
                f = await self._receive(t_sent)
                self._check(f, address, function, di, di_len, seq)
            except _Timeout:
                self.stats["timeouts"] += 1
                last = NoReply("meter %s: no reply to %02X" % (address, function))
                self._note("timeout", address, attempt)
                continue
            except Corrupt as e:
                self.stats["corrupt"] += 1
                last = e
                self._note(e, address, attempt)
                continue
            self.stats["replies"] += 1
            if f.abnormal:
                err = f.error
                self.stats["refused" if expect_refusal and err.no_data else "abnormal"] += 1
                raise err
            return f
        raise last

    def _note(self, what, address, attempt):
        if self.log:
            self.log.warning("meter %s: %s (attempt %d of %d)", address, what, attempt + 1, self.retries + 1)

    def _check(self, f, address, function, di, di_len, seq):
        if not dlt645.address_matches(address, f.address):
            raise Corrupt("reply from %s to a request for %s" % (f.address, address))
        if f.function != function:
            raise Corrupt("reply %02X to a request %02X" % (f.control, function))
        if f.abnormal or di is None:
            return
        got, _ = dlt645.split_reply(f, di_len)
        if got != di:
            raise Corrupt("reply for DI %08X, asked %08X" % (got, di))
        if seq is not None and (len(f.data) < 5 or f.data[-1] != seq):
            raise Corrupt("follow-up frame out of sequence")

    async def _send(self, frame):
        """Drain stray bytes, send preamble + frame, hold DE until it has left; return when the line is free."""
        self._drain()
        out = self.preamble + frame
        n = len(out)
        if self.de:
            self.de.on()
        t0 = time.ticks_ms()
        limit = self.wire_ms(n) * 2 + self.timeout_ms
        try:
            mv = memoryview(out)
            k = 0
            while k < n:
                w = self.uart.write(mv[k:])
                if w:
                    k += w
                elif time.ticks_diff(time.ticks_ms(), t0) > limit:
                    break  # a UART that takes nothing: the missing reply will say so
                else:
                    await asyncio.sleep_ms(1)
            self.stats["bytes_tx"] += k
            t_sent = time.ticks_add(t0, self.wire_ms(n))
            if time.ticks_diff(time.ticks_ms(), t_sent) > 0:
                t_sent = time.ticks_ms()  # the writes themselves were slow (a link still connecting)
            if self.de:
                await self._tx_done(t_sent, limit)
        finally:
            if self.de:
                self.de.off()
        return t_sent

    async def _tx_done(self, t_sent, limit):
        # Hold the driver until the last stop bit has left: the UART knows best, else the wire time.
        uart = self.uart
        if hasattr(uart, "txdone"):
            t0 = time.ticks_ms()
            while not uart.txdone() and time.ticks_diff(time.ticks_ms(), t0) < limit:
                await asyncio.sleep_ms(1)
            return
        wait = time.ticks_diff(t_sent, time.ticks_ms())
        if wait > 0:
            await asyncio.sleep_ms(wait)
        if hasattr(uart, "flush"):
            uart.flush()

    def _drain(self):
        uart = self.uart
        for _ in range(_MAX_DRAIN):
            if not uart.any():
                return
            k = uart.readinto(self._buf)
            if not k:
                return
            self.stats["stray_bytes"] += k
            self.stats["bytes_rx"] += k

    async def _receive(self, t_sent):
        """The first reply frame from the line; _Timeout if none started, Corrupt if one went wrong."""
        buf = self._buf
        mv = self._mv
        n = 0
        begun = False  # a 68 has been seen: the reply may run past timeout_ms, gap_ms at a time
        bad = None
        # Even a line that trickles bytes forever ends here: first-byte wait + a full buffer's wire time.
        hard = time.ticks_add(t_sent, self.timeout_ms + self.gap_ms + self.wire_ms(_BUF))
        while True:
            first = self.timeout_ms - time.ticks_diff(time.ticks_ms(), t_sent)
            if bad:
                wait = self.gap_ms  # a bad frame is on the line: retry as soon as it falls quiet
            elif begun:
                wait = max(self.gap_ms, first)  # a stray 68 in noise must not cut the first-byte wait short
            else:
                wait = first
            wait = min(wait, time.ticks_diff(hard, time.ticks_ms()))
            if n >= _BUF:
                raise Corrupt("no frame in %d bytes" % n)
            k = None
            if wait > 0:
                try:
                    k = await asyncio.wait_for_ms(self._reader.readinto(mv[n:]), wait)
                except asyncio.TimeoutError:
                    wait = 0
            if wait <= 0:
                self.stats["stray_bytes"] += n
                if bad or begun:
                    raise bad or Corrupt("reply cut short after %d bytes" % n)
                raise _Timeout()
            if not k:
                await asyncio.sleep_ms(2)  # the link hiccuped; the waits above still bound this
                continue
            begun = begun or _has_start(buf, n, n + k)
            n += k
            self.stats["bytes_rx"] += k
            try:
                f = dlt645.decode(buf, 0, n)
            except Incomplete:
                continue
            except Corrupt as e:
                bad = e
                continue
            if not f.is_reply:
                # Our own request echoed by a half-duplex adapter: skip it.
                rest = n - f.end
                for i in range(rest):  # (bytearray slice assignment is not in every port)
                    buf[i] = buf[f.end + i]
                n = rest
                begun = _has_start(buf, 0, n)
                continue
            stray = n - f.end
            for i in range(f.start):
                if buf[i] != 0xFE:
                    stray += 1
            self.stats["stray_bytes"] += stray
            return f


def _has_start(buf, a, b):
    for i in range(a, b):
        if buf[i] == 0x68:
            return True
    return False
