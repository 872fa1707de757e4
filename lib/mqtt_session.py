"""An asyncio MQTT 3.1.1 session over any async byte stream, with umqtt.simple as the packet codec.

umqtt.simple is a blocking client: it writes a packet to its socket and then
reads until the answer arrives. Here its socket is an in-memory pipe. Packets
it builds (CONNECT, PUBLISH, SUBSCRIBE, PINGREQ, DISCONNECT, and the PUBACK of
an incoming QoS 1 message) are taken from the pipe and written to the real
stream by this layer; incoming PUBLISH packets are framed here and fed to
umqtt to decode. The acknowledgements umqtt would block for (CONNACK, PUBACK,
SUBACK) are answered synchronously inside the pipe so umqtt returns at once;
the real ones are awaited here, with a bound, matched by packet id. So umqtt
encodes and decodes, and this layer owns waiting, timeouts, keepalive and
teardown. Reconnecting is the caller's policy: a dead session raises
`Disconnected` and a new one is made.

The stream needs: `async write(data)`, `async read(n) -> bytes` (b"" once
closed) and `close()`. Reads are never cancelled (a modem socket may be in the
middle of an AT exchange); a dead link is detected by keepalive and closed.

An incoming PUBLISH larger than _MAX_IN is never buffered: it is skipped as it
streams in, and a QoS 1 one is still acknowledged (its packet id is read on the
way), or the broker would hold it in flight and stop delivering at its in-flight
limit. The session's tasks (reader, keeper) are supervised: any end of one that
is not the session's own (a MemoryError, a bug in a callback) ends the session
at once, so the caller reconnects instead of waiting for the keepalive.
"""

import asyncio
import struct

from mpcompat import ticks_diff, ticks_ms

from umqtt import simple as _umqtt

_MAX_IN = 4096  # larger incoming packets are skipped (a QoS 1 one acknowledged) and counted
_READ = 1536  # asked of the stream per read: a modem socket's whole chunk (QIRD gives at most 1500), not split


class MQTTError(Exception):
    pass


class Disconnected(MQTTError):
    pass


class _Pipe:
    """The in-memory 'socket' umqtt.simple reads from and writes to."""

    def __init__(self):
        self.out = bytearray()
        self.inp = b""
        self.pos = 0

    def feed(self, data):
        """What umqtt reads next (a packet; a memoryview of the receive buffer is read without a copy)."""
        self.inp = data
        self.pos = 0

    def write(self, buf, n=None):
        self.out += buf if n is None else buf[:n]
        return len(buf) if n is None else n

    def read(self, n):
        p = self.pos
        if len(self.inp) - p < n:
            raise MQTTError("codec read past the buffered packet")
        self.pos = p + n
        return bytes(self.inp[p:p + n])

    def setblocking(self, flag):
        pass

    def connect(self, addr):
        pass

    def close(self):
        pass

    def take(self):
        data = bytes(self.out)
        self.out = bytearray()
        return data


class _SockShim:
    """Stands in for umqtt's `socket` module during connect(): hands it the pipe."""

    def __init__(self, pipe):
        self._pipe = pipe

    def socket(self, *args):
        return self._pipe

    def getaddrinfo(self, host, port, *args):
        return [(0, 0, 0, "", ("0.0.0.0", port))]


class Session:
    def __init__(self, stream, client_id, *, user=None, password=None, keepalive=120, on_message=None,
                 timeout_ms=20000, log=None, counters=None):
        self.stream = stream
        self.keepalive = keepalive
        self.timeout_ms = timeout_ms
        self.on_message = on_message
        self.log = log
        self.connected = False
        self.stats = {"tx_packets": 0, "rx_packets": 0, "pings": 0, "oversize": 0, "bytes_tx": 0, "bytes_rx": 0}
        self._pipe = _Pipe()
        self._c = _umqtt.MQTTClient(client_id, "0.0.0.0", 1883, user=user, password=password, keepalive=keepalive)
        self._c.sock = self._pipe
        self._c.set_callback(self._deliver)
        self._waiters = {}  # (packet type, packet id) -> [asyncio.Event, result]
        self._lock = asyncio.Lock()  # one writer on the stream
        self._rx = bytearray()
        self._rxp = 0  # bytes of _rx already framed; dropped (in place) before the next read is appended
        self._last_rx = ticks_ms()
        self._last_tx = ticks_ms()
        self._tasks = []
        self._dead = None
        self._inbox = []
        self._big = None  # an oversize PUBLISH being skipped: [bytes left, offset, qos, topic length, packet id, size]
        self.counters = counters  # a dict outliving the session: "oversize" is added to it too

    # -- sending -----------------------------------------------------------
    async def _flush(self):
        data = self._pipe.take()
        if not data:
            return
        async with self._lock:
            try:
                await self.stream.write(data)
            except OSError as e:
                self._kill("write failed: %s" % (e,))
                raise Disconnected(self._dead)
        self.stats["tx_packets"] += 1
        self.stats["bytes_tx"] += len(data)
        self._last_tx = ticks_ms()

    async def _await(self, key, what):
        early = self._waiters.get(key)
        if early is not None and early[0] is None:  # answered before we started waiting
            del self._waiters[key]
            return early[1]
        ev = asyncio.Event()
        slot = [ev, None]
        self._waiters[key] = slot
        try:
            await asyncio.wait_for_ms(ev.wait(), self.timeout_ms)
        except asyncio.TimeoutError:
            self._kill("no %s within %d ms" % (what, self.timeout_ms))
            raise Disconnected(self._dead)
        finally:
            self._waiters.pop(key, None)
        if slot[1] is None:
            raise Disconnected(self._dead or "closed")
        return slot[1]

    # -- public API --------------------------------------------------------
    async def connect(self, will=None, clean=True):
        """Send CONNECT (with an optional will (topic, payload, qos, retain)) and await CONNACK."""
        c = self._c
        if will:
            c.set_last_will(will[0], will[1], retain=will[3], qos=will[2])
        self._pipe.feed(b"\x20\x02\x00\x00")  # what umqtt blocks for; the real CONNACK is checked below
        saved = _umqtt.socket
        _umqtt.socket = _SockShim(self._pipe)
        try:
            c.connect(clean_session=clean)
        finally:
            _umqtt.socket = saved
        self._pipe.feed(b"")
        self._tasks.append(asyncio.create_task(self._guard("reader", self._reader())))
        await self._flush()
        code = await self._await((0x20, 0), "CONNACK")
        if code != 0:
            self._kill("CONNACK refused with code %d" % code)
            raise MQTTError("connection refused, code %d" % code)
        self.connected = True
        self._tasks.append(asyncio.create_task(self._guard("keeper", self._keeper())))

    async def publish(self, topic, payload, qos=0, retain=False):
        """Publish; with qos=1 return only after the broker's PUBACK (bounded)."""
        self._check()
        c = self._c
        if c.pid >= 65535:
            c.pid = 0  # packet ids are 16-bit and never 0; umqtt.simple does not wrap them
        if qos == 1:
            pid = c.pid + 1
            self._pipe.feed(b"\x40\x02" + struct.pack("!H", pid))
        c.publish(topic, payload, retain, qos)
        self._pipe.feed(b"")
        if qos != 1:
            await self._flush()
            return
        key = (0x40, pid)
        self._waiters[key] = None  # reserve before sending so a fast PUBACK is not lost
        await self._flush()
        await self._await(key, "PUBACK")

    async def subscribe(self, topic, qos=1):
        self._check()
        c = self._c
        if c.pid >= 65535:
            c.pid = 0
        pid = c.pid + 1
        self._pipe.feed(b"\x90\x03" + struct.pack("!H", pid) + bytes((qos,)))
        c.subscribe(topic, qos)
        self._pipe.feed(b"")
        key = (0x90, pid)
        self._waiters[key] = None
        await self._flush()
        granted = await self._await(key, "SUBACK")
        if granted == 0x80:
            raise MQTTError("subscription to %s refused" % topic)
        return granted

    async def disconnect(self):
        """Clean shutdown: DISCONNECT (the broker then drops the will), close the stream."""
        if self.connected:
            self._c.sock = self._pipe
            self._pipe.write(b"\xe0\x00")
            try:
                await asyncio.wait_for_ms(self._flush(), 2000)
            except (asyncio.TimeoutError, MQTTError):
                pass
        self._kill("disconnected")

    def close(self):
        self._kill("closed")

    @property
    def dead(self):
        return self._dead

    async def wait_closed(self):
        while self._dead is None:
            await asyncio.sleep_ms(200)
        return self._dead

    async def _guard(self, name, coro):
        """Run one of the session's tasks; an end the session did not ask for ends the session."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - MemoryError, a failing callback: the session cannot go on deaf
            try:
                why = "%s died: %s: %s" % (name, type(e).__name__, e)
            except MemoryError:
                why = "%s died" % name
            self._kill(why)
            return
        self._kill("%s ended" % name)

    # -- receiving ---------------------------------------------------------
    def _deliver(self, topic, msg):
        self._inbox.append((topic, msg))

    async def _reader(self):
        try:
            while self._dead is None:
                data = await self.stream.read(_READ)
                if not data:
                    self._kill("stream closed by peer")
                    return
                self.stats["bytes_rx"] += len(data)
                self._last_rx = ticks_ms()
                if self._rxp:
                    self._rx[0:self._rxp] = b""
                    self._rxp = 0
                self._rx += data
                while self._dead is None:
                    if self._big is not None:
                        if not self._skip_big():
                            break
                        await self._skipped()
                        continue
                    pkt = self._frame()
                    if pkt is None:
                        break
                    await self._handle(pkt)
        except OSError as e:
            self._kill("read failed: %s" % (e,))
        except MQTTError as e:
            self._kill("protocol error: %s" % (e,))

    def _frame(self):
        """The next complete packet in the receive buffer (a memoryview into it, valid until the next read), or
        None. Framing moves an offset: nothing is copied per packet."""
        buf, p = self._rx, self._rxp
        if p >= len(buf):
            return None
        n = 0
        shift = 0
        i = 1
        while True:
            if p + i >= len(buf):
                return None
            b = buf[p + i]
            n |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTError("bad remaining length")
        if n > _MAX_IN:
            if buf[p] & 0xF0 != 0x30:
                raise MQTTError("oversize packet 0x%02x" % buf[p])
            qos = buf[p] >> 1 & 3
            if qos == 2:
                raise MQTTError("QoS 2 PUBLISH")
            # skip it as it streams in, reading the packet id on the way (after the topic) to acknowledge it
            self._big = [n, 0, qos, 0, 0, n]
            self._rxp = p + i
            return None
        if len(buf) < p + i + n:
            return None
        self._rxp = p + i + n
        return memoryview(buf)[p:p + i + n]

    def _skip_big(self):
        """Drop what has arrived of the oversize PUBLISH; True once all of it has gone."""
        big, buf = self._big, self._rx
        left, off, qos = big[0], big[1], big[2]
        k = self._rxp
        # the variable header (topic length, topic, packet id) is read byte by byte; the payload is dropped whole
        while k < len(buf) and left and (qos and off < big[3] + 4 or off < 2):
            b = buf[k]
            if off == 0:
                big[3] = b << 8
            elif off == 1:
                big[3] |= b
            elif off == big[3] + 2:
                big[4] = b << 8
            elif off == big[3] + 3:
                big[4] |= b
            k += 1
            off += 1
            left -= 1
        drop = min(left, len(buf) - k)
        left -= drop
        k += drop
        self._rxp = k
        big[0], big[1] = left, off
        return left == 0

    async def _skipped(self):
        """An oversize PUBLISH has been skipped: count it, and acknowledge it if it was QoS 1."""
        big, self._big = self._big, None
        self.stats["oversize"] += 1
        if self.counters is not None:
            self.counters["oversize"] = self.counters.get("oversize", 0) + 1
        if self.log:
            self.log.warning("incoming message of %d bytes skipped (at most %d)", big[5], _MAX_IN)
        if big[2] == 1:
            if big[3] + 4 > big[1]:
                raise MQTTError("oversize PUBLISH shorter than its header")
            self._pipe.write(b"\x40\x02" + struct.pack("!H", big[4]))
            await self._flush()

    async def _handle(self, pkt):
        self.stats["rx_packets"] += 1
        kind = pkt[0] & 0xF0
        if kind == 0x30:  # PUBLISH: umqtt decodes it and queues its PUBACK in the pipe
            self._pipe.feed(pkt)
            try:
                self._c.wait_msg()
            except (AssertionError, IndexError):  # QoS 2 or a truncated packet: not ours to handle
                raise MQTTError("undecodable PUBLISH")
            finally:
                self._pipe.feed(b"")
            await self._flush()
            inbox, self._inbox = self._inbox, []
            for topic, msg in inbox:
                if self.on_message:
                    self.on_message(topic, msg)
            return
        if kind == 0x20 and len(pkt) >= 4:  # CONNACK
            self._resolve((0x20, 0), pkt[3])
        elif kind == 0x40 and len(pkt) >= 4:  # PUBACK
            self._resolve((0x40, pkt[2] << 8 | pkt[3]), True)
        elif kind == 0x90 and len(pkt) >= 5:  # SUBACK
            self._resolve((0x90, pkt[2] << 8 | pkt[3]), pkt[4])
        elif kind == 0xD0:  # PINGRESP: _last_rx already moved
            pass
        else:
            raise MQTTError("unexpected packet 0x%02x" % pkt[0])

    def _resolve(self, key, value):
        slot = self._waiters.get(key)
        if slot is None:
            if key in self._waiters:  # reserved, not yet awaited: keep the answer
                self._waiters[key] = [None, value]
            return
        if slot[0] is None:  # already answered
            return
        slot[1] = value
        slot[0].set()

    # -- keepalive ---------------------------------------------------------
    async def _keeper(self):
        ka_ms = self.keepalive * 1000
        while self._dead is None:
            await asyncio.sleep_ms(min(1000, ka_ms // 4))
            now = ticks_ms()
            if ticks_diff(now, self._last_rx) > ka_ms + self.timeout_ms:
                self._kill("nothing from the broker for %d s" % (ticks_diff(now, self._last_rx) // 1000))
                return
            # PINGREQ when we have been silent for half the keepalive (the broker needs to hear from us), or
            # when the broker has been silent a whole keepalive (a probe: is the link still there?). Traffic
            # that flows anyway (heartbeats, acknowledged records) makes pings unnecessary: bytes cost money.
            if ticks_diff(now, self._last_tx) >= ka_ms // 2 or ticks_diff(now, self._last_rx) >= ka_ms:
                self._c.ping()
                self.stats["pings"] += 1
                try:
                    await self._flush()
                except MQTTError:
                    return

    def _check(self):
        if self._dead is not None:
            raise Disconnected(self._dead)

    def _kill(self, why):
        if self._dead is not None:
            return
        self._dead = why
        self.connected = False
        if self.log:
            self.log.info("mqtt session ended: %s", why)
        try:
            self.stream.close()
        except OSError:
            pass
        for slot in list(self._waiters.values()):
            if slot and slot[0] is not None:
                slot[1] = None
                slot[0].set()
        # the reader is not cancelled: closing the stream ends its pending read
        for t in self._tasks[1:]:
            if t is not asyncio.current_task():
                t.cancel()
