"""AT command engine: one command at a time over a UART, with URC routing, prompts and raw data reads.

A single reader task owns the receive side. It splits lines, drops the echo
of the command in flight, completes the command on its final result (`OK`,
`ERROR`, `+CME ERROR: n`, `+CMS ERROR: n`, `SEND OK`, `SEND FAIL`), hands the
`> ` prompt to a command that sends a payload, reads exactly n raw bytes
after a data header such as `+QIRD: n`, and routes unsolicited lines (URCs)
to handlers even when they arrive in the middle of a response. Noise on the
line is counted and skipped. `RDY` (the module restarted) fails the command
in flight, is counted, and is reported through `on_rdy`.

A response that arrives after its command timed out cannot be told apart
from the next command's, so a driver treats a timeout as a sign of trouble
(its recovery escalates) rather than retrying at once.
"""

import asyncio

from atlines import (  # noqa: F401  (re-exported: the engine's errors and line helpers)
    URC_PREFIXES,
    ATEngineError,
    ATError,
    ATReboot,
    ATTimeout,
    printable,
    error_code,
    final_kind,
    response_prefix,
)
from mpcompat import const, ticks_diff, ticks_ms

_RXBUF = const(1024)  # longest line kept; longer runs without a newline are noise
_DATABUF = const(1536)  # raw payload buffer (QIRD answers at most 1500 bytes)
_PROMPT = const(0x3E)  # '>'
_WRITE_PAUSE_MS = const(2)
_IDLE_PAUSE_MS = const(50)

try:
    _wait_for_ms = asyncio.wait_for_ms
except AttributeError:  # CPython

    def _wait_for_ms(aw, ms):
        return asyncio.wait_for(aw, ms / 1000)


try:
    _sleep_ms = asyncio.sleep_ms
except AttributeError:  # CPython

    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


class _Command:
    """The command in flight; one instance is reused for every command."""

    def __init__(self):
        self.reset("")

    def reset(self, text, want_prompt=False, data_prefix=None, data_field=0):
        self.text = text
        self.prefix = response_prefix(text)
        self.want_prompt = want_prompt
        self.prompted = False
        self.data_prefix = data_prefix
        self.data_field = data_field
        self.data_len = 0
        self.lines = []
        self.final = None
        self.final_line = None


class AT:
    """The engine: `start()` it inside the event loop, then `await cmd(...)`."""

    def __init__(self, uart, *, log=None, rxbuf=_RXBUF):
        self.uart = uart
        self.log = log
        self.on_rdy = None  # called (no arguments) from the reader when RDY arrives
        self.unanswered = 0  # commands in a row that got no final result at all: a hung or dead module
        self.stats = {"commands": 0, "timeouts": 0, "errors": 0, "urcs": 0, "garbage": 0, "rdy": 0,
                      "echo": 0, "stray": 0, "busy": 0, "overflow": 0, "bad_data": 0, "handler_errors": 0}
        self._buf = bytearray(rxbuf)
        self._mv = memoryview(self._buf)
        self._pos = 0
        self._len = 0
        self._data = bytearray(_DATABUF)
        self._raw_left = 0
        self._handlers = []  # [prefix, handler]
        self._waiters = []  # [prefix, Event, line or None]
        self._rec = _Command()
        self._cur = None
        self._ev = asyncio.Event()
        self._rdy_ev = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task = None
        self._secrets = []

    # -- secrets ---------------------------------------------------------------
    def secret(self, text):
        """Register a secret (an APN password): it is masked in every log line and error text from here on."""
        if text and text not in self._secrets:
            self._secrets.append(text)

    def mask(self, text):
        """`text` with every registered secret replaced by ***."""
        for s in self._secrets:
            if s in text:
                text = text.replace(s, "***")
        return text

    # -- life cycle ------------------------------------------------------------
    def start(self):
        """Start the reader task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._reader())

    def stop(self):
        """Cancel the reader task."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def running(self):
        return self._task is not None

    # -- URCs ------------------------------------------------------------------
    def on_urc(self, prefix, handler):
        """Call handler(line) from the reader for every unsolicited line starting with prefix; keep it quick."""
        self._handlers.append([prefix, handler])

    async def wait_urc(self, prefix, timeout_ms):
        """The next unsolicited line starting with prefix; ATTimeout after timeout_ms."""
        w = self._add_waiter(prefix)
        try:
            return await self._await_waiter(w, ticks_ms(), timeout_ms)
        finally:
            self._drop_waiter(w)

    async def wait_rdy(self, since, timeout_ms):
        """True once stats['rdy'] exceeds `since` (snapshot it before causing a restart), False on timeout."""
        t0 = ticks_ms()
        while self.stats["rdy"] <= since:
            left = timeout_ms - ticks_diff(ticks_ms(), t0)
            if left <= 0:
                return False
            self._rdy_ev.clear()
            if self.stats["rdy"] > since:
                break
            try:
                await _wait_for_ms(self._rdy_ev.wait(), left)
            except asyncio.TimeoutError:
                pass
        return True

    def abandon(self, prefix):
        """End every wait for a URC that starts with `prefix` at once (its line reads as ""): it will not come,
        e.g. the open result of a socket whose context or module went away meanwhile."""
        for w in self._waiters:
            if w[2] is None and w[0] == prefix:
                w[2] = ""
                w[1].set()

    def _add_waiter(self, prefix):
        w = [prefix, asyncio.Event(), None]
        self._waiters.append(w)
        return w

    def _drop_waiter(self, w):
        if w in self._waiters:
            self._waiters.remove(w)

    async def _await_waiter(self, w, t0, timeout_ms):
        while w[2] is None:
            left = timeout_ms - ticks_diff(ticks_ms(), t0)
            if left <= 0:
                self.stats["timeouts"] += 1
                raise ATTimeout("no %s within %d ms" % (w[0], timeout_ms))
            try:
                await _wait_for_ms(w[1].wait(), left)
            except asyncio.TimeoutError:
                pass
        return w[2]

    # -- commands --------------------------------------------------------------
    async def cmd(self, text, timeout_ms=5000, payload=None, expect=None, expect_timeout_ms=None):
        """Send `text`, return its response lines (without the final result).

        payload: bytes written after the `> ` prompt or a `CONNECT` line (the final is then SEND OK / SEND FAIL,
        or OK after an upload's result line).
        expect: a URC prefix to wait for after the final OK, within expect_timeout_ms (default: the same
        limit) from the start; its line is appended to the result. Raises ATError, ATTimeout, ATReboot.
        """
        return (await self._exec(text, timeout_ms, payload, expect, expect_timeout_ms, None, 0))[0]

    async def read_data(self, text, timeout_ms=5000, prefix="+QIRD:", field=0):
        """Send a read command such as AT+QIRD=0,1500 and return the raw payload bytes (b'' when none).

        prefix/field: the header line whose field gives the count of raw bytes that follow it.
        """
        return (await self._exec(text, timeout_ms, None, None, None, prefix, field))[1]

    async def _exec(self, text, timeout_ms, payload, expect, expect_timeout_ms, data_prefix, data_field):
        t0 = ticks_ms()
        if self._lock.locked():
            try:
                await _wait_for_ms(self._lock.acquire(), timeout_ms)
            except asyncio.TimeoutError:
                self.stats["busy"] += 1
                self.stats["timeouts"] += 1
                raise ATTimeout("%s: engine busy for %d ms" % (self.mask(text), timeout_ms))
        else:
            await self._lock.acquire()  # free: no task needed for a time limit
        w = self._add_waiter(expect) if expect else None
        try:
            try:
                c = self._begin(text, payload is not None, data_prefix, data_field)
                if self.log:
                    self.log.debug("AT> %s", self.mask(text))
                await self._write_all(text.encode() + b"\r", t0, timeout_ms)  # one write: no split segment
                if payload is not None:
                    await self._wait(c, t0, timeout_ms, True)
                    if c.final is None:
                        await self._write_all(payload, t0, timeout_ms)
                await self._wait(c, t0, timeout_ms, False)
                self.unanswered = 0  # the module answered (OK, ERROR, anything final)
                lines = c.lines
                c.lines = []
                self._check(c, lines)
                data = bytes(self._data[:c.data_len]) if c.data_len else b""
            finally:
                self._cur = None
                self._lock.release()
            if w is not None:
                lines.append(await self._await_waiter(w, t0, expect_timeout_ms or timeout_ms))
            return lines, data
        finally:
            if w is not None:
                self._drop_waiter(w)

    def _begin(self, text, want_prompt=False, data_prefix=None, data_field=0):
        # The command becomes the one in flight: from here the reader matches lines against it.
        c = self._rec
        c.reset(text, want_prompt, data_prefix, data_field)
        self._cur = c
        self.stats["commands"] += 1
        return c

    def _check(self, c, lines):
        f = c.final
        if f == "OK" or f == "SEND OK":
            return
        if f == "RDY":
            raise ATReboot("%s: module restarted" % self.mask(c.text))
        self.stats["errors"] += 1
        raise ATError(error_code(c.final_line) if f[0] == "+" else None, lines, f)

    async def _wait(self, c, t0, timeout_ms, prompt):
        while c.final is None and not (prompt and c.prompted):
            left = timeout_ms - ticks_diff(ticks_ms(), t0)
            if left <= 0:
                self.stats["timeouts"] += 1
                self.unanswered += 1
                if self.log:
                    self.log.warning("AT timeout: %s (%d ms)", self.mask(c.text), timeout_ms)
                raise ATTimeout("%s: no %s within %d ms" % (self.mask(c.text), "prompt" if prompt else "result",
                                                            timeout_ms))
            self._ev.clear()
            if c.final is not None or (prompt and c.prompted):
                break
            try:
                await _wait_for_ms(self._ev.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def _write_all(self, data, t0, timeout_ms):
        mv = memoryview(data)
        off = 0
        while off < len(mv):
            n = self.uart.write(mv[off:])
            if n:
                off += n
                continue
            if ticks_diff(ticks_ms(), t0) >= timeout_ms:
                self.stats["timeouts"] += 1
                raise ATTimeout("UART write stalled")
            await _sleep_ms(_WRITE_PAUSE_MS)

    # -- receive side ----------------------------------------------------------
    async def _reader(self):
        sr = asyncio.StreamReader(self.uart)
        uart = self.uart
        while True:
            if self._len >= len(self._buf):
                self._overflow()
            n = await sr.readinto(self._mv[self._len:])
            if not n:
                # A TCP stand-in that lost its peer never becomes readable again: poll it gently.
                if not getattr(uart, "connected", True):
                    await _sleep_ms(_IDLE_PAUSE_MS)
                    uart.any()
                continue
            self._len += n
            try:
                self.feed_buffered()
            except Exception as e:  # a bug in routing must not kill the only reader
                self.stats["handler_errors"] += 1
                self._pos = self._len = 0
                if self.log:
                    self.log.error("AT reader: %r", e)

    def feed(self, data):
        """Process received bytes as if the reader had read them (tests and benchmarks)."""
        mv = memoryview(data)
        off = 0
        while off < len(mv):
            if self._len >= len(self._buf):
                self._overflow()
            k = min(len(mv) - off, len(self._buf) - self._len)
            self._mv[self._len:self._len + k] = mv[off:off + k]
            self._len += k
            off += k
            self.feed_buffered()

    def _overflow(self):
        # A full buffer without a newline is noise (lines are far shorter): drop it.
        self.stats["overflow"] += 1
        self.stats["garbage"] += self._len - self._pos
        self._pos = self._len = 0

    def feed_buffered(self):
        """Consume what the buffer holds: raw payload bytes, the prompt, and complete lines."""
        buf = self._buf
        while self._pos < self._len:
            if self._raw_left:
                self._take_raw()
                continue
            c = self._cur
            if c is not None and c.want_prompt and not c.prompted and c.final is None and buf[self._pos] == _PROMPT:
                c.prompted = True
                self._pos += 1
                self._ev.set()
                continue
            i = buf.find(b"\n", self._pos, self._len)
            if i < 0:
                break
            start = self._pos
            self._pos = i + 1
            self._line(start, i)
        if self._pos >= self._len:
            self._pos = self._len = 0
        elif self._pos and self._len == len(buf):
            k = self._len - self._pos
            self._mv[0:k] = self._mv[self._pos:self._len]
            self._pos, self._len = 0, k

    def _take_raw(self):
        c = self._rec
        k = min(self._raw_left, self._len - self._pos)
        self._data[c.data_len:c.data_len + k] = self._mv[self._pos:self._pos + k]
        c.data_len += k
        self._pos += k
        self._raw_left -= k

    def _line(self, start, end):
        buf = self._buf
        while end > start and buf[end - 1] <= 32:
            end -= 1  # CR and trailing blanks
        while start < end and buf[start] <= 32:
            start += 1
        if start == end:
            return
        try:
            text = str(self._mv[start:end], "utf-8")
        except UnicodeError:
            text, junk = printable(self._mv[start:end])
            self.stats["garbage"] += junk
            text = text.strip()
            if not text:
                return
        self.route(text)

    def route(self, text):
        """Route one complete line (exposed for tests)."""
        if self.log:
            self.log.debug("AT< %s", self.mask(text))
        c = self._cur
        if text == "RDY":
            self._rdy(c)
            return
        if self._resolve(text):
            self.stats["urcs"] += 1
            return
        if c is None:
            if self._is_urc(text):
                self._urc(text)
            else:
                self.stats["stray"] += 1
            return
        if text == c.text:
            self.stats["echo"] += 1
            return
        if text == "CONNECT" and c.want_prompt and not c.prompted and c.final is None:
            c.prompted = True  # the go-ahead of a data upload (AT+QFUPL), as the `> ` prompt is for a send
            self._ev.set()
            return
        kind = final_kind(text)
        if kind is not None:
            if c.final is None:
                c.final = kind
                c.final_line = text
                self._ev.set()
            return
        if c.data_prefix and text.startswith(c.data_prefix):
            c.lines.append(text)
            try:
                n = int(text[len(c.data_prefix):].split(",")[c.data_field])
            except (ValueError, IndexError):
                n = -1
            c.data_len = 0
            if 0 <= n <= len(self._data):
                self._raw_left = n
            else:
                # No answer has such a count: a corrupted header. Trusting it would grow the buffer or
                # swallow the following lines, so what follows is read as lines.
                self.stats["bad_data"] += 1
            return
        if c.prefix and text.startswith(c.prefix):
            c.lines.append(text)
        elif self._is_urc(text):
            self._urc(text)
        else:
            c.lines.append(text)

    def _resolve(self, text):
        for w in self._waiters:
            if w[2] is None and text.startswith(w[0]):
                w[2] = text
                w[1].set()
                return True
        return False

    def _is_urc(self, text):
        for h in self._handlers:
            if text.startswith(h[0]):
                return True
        for p in URC_PREFIXES:
            if text.startswith(p):
                return True
        return False

    def _urc(self, text):
        self.stats["urcs"] += 1
        for h in self._handlers:
            if text.startswith(h[0]):
                try:
                    h[1](text)
                except Exception as e:  # a handler's bug must not stop routing
                    self.stats["handler_errors"] += 1
                    if self.log:
                        self.log.error("URC handler for %s: %r", h[0], e)

    def _rdy(self, c):
        self.stats["rdy"] += 1
        self._raw_left = 0
        if c is not None and c.final is None:
            c.final = "RDY"
            self._ev.set()
        self._rdy_ev.set()
        self._resolve("RDY")
        self._urc("RDY")
        if self.on_rdy is not None:
            try:
                self.on_rdy()
            except Exception as e:  # the driver's bug must not stop routing
                self.stats["handler_errors"] += 1
                if self.log:
                    self.log.error("RDY handler: %r", e)
