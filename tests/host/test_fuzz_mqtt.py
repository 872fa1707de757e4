"""Fuzzing the MQTT session's receive path with random and mutated broker packets: only MQTTError, never a hang.

Each input is a byte stream of packets (CONNACK, PUBACK, SUBACK, PINGRESP,
PUBLISH at QoS 0/1/2, unexpected types, bad or non-minimal remaining
lengths, oversize and truncated packets), sometimes mutated, cut into random
reads of at most 1024 bytes. The session's real reader task runs over a fake
stream that hands out those reads and then reports end of stream; nothing in
it awaits anything else, so the coroutine is stepped to completion directly.
The reader must end with `stream closed by peer` or a `protocol error`, with
its receive buffer bounded at every read. One input in eight is a clean
stream whose messages and PUBACKs are checked.
"""

import struct

import pytest

from fuzzkit import Campaign, chunks, count, import_umqtt, mutate, random_bytes

umqtt = import_umqtt()
if umqtt is None:
    pytest.skip("umqtt.simple is not in build/lib (run `make deps`)", allow_module_level=True)

import mqtt_session  # noqa: E402  (needs umqtt.simple importable first)

_MAX_IN = mqtt_session._MAX_IN
_READ = mqtt_session._READ  # what the session's reader asks for


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish(topic, payload, qos=0, pid=1, retain=0, dup=0):
    var = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", pid) if qos else b"")
    body = var + payload
    return bytes((0x30 | dup << 3 | qos << 1 | retain,)) + _varint(len(body)) + body


def _topic(rng):
    return rng.choice((b"bdmeter/861234567890123/cmd", b"a", b"", b"+/#", b"\xff\xfe", b"t" * 300,
                       random_bytes(rng, 0, 20)))


def _packet(rng):
    k = rng.randrange(16)
    if k == 0:
        return b"\x20\x02\x00" + bytes((rng.choice((0, 0, 1, 5, 255)),))
    if k == 1:
        return b"\x40\x02" + struct.pack("!H", rng.choice((1, 2, 65535, 0, rng.randrange(65536))))
    if k == 2:
        return b"\x90\x03" + struct.pack("!H", rng.randrange(1, 4)) + bytes((rng.choice((0, 1, 2, 0x80)),))
    if k == 3:
        return b"\xd0\x00"
    if k in (4, 5, 6, 7):
        return _publish(_topic(rng), random_bytes(rng, 0, rng.choice((8, 200, 1500))), rng.choice((0, 0, 1, 1, 2, 3)),
                        rng.randrange(65536), rng.randrange(2), rng.randrange(2))
    if k == 8:  # oversize: announced past the session's limit, followed by a part (or all) of its body
        n = rng.choice((_MAX_IN + 1, _MAX_IN + 2, 5000, 70000, 2 ** 21 - 1, 2 ** 28 - 1))
        head = bytes((rng.choice((0x30, 0x32, 0x40, 0x90)),)) + _varint(n)
        return head + b"\x00" * min(n, rng.choice((0, 10, 1000, 5000)))
    if k == 9:  # remaining length of 5 bytes, or all continuation bits
        return bytes((rng.choice((0x30, 0xD0)),)) + rng.choice((b"\xff\xff\xff\xff\x7f", b"\x80\x80\x80\x80\x00",
                                                                 b"\xff\xff\xff\xff\xff\xff", b"\x80"))
    if k == 10:  # non-minimal remaining length
        return bytes((rng.choice((0xD0, 0x20, 0x30)),)) + rng.choice((b"\x80\x00", b"\x82\x00", b"\x80\x80\x00"))
    if k == 11:  # a PUBLISH whose topic length runs past its end, or too short to hold one
        return rng.choice((b"\x30\x02\x00\x05", b"\x30\x01\x00", b"\x30\x00", b"\x32\x03\x00\x00\x01",
                           b"\x34\x04\x00\x01a\x00", b"\x36\x05\x00\x01ab\x00"))
    if k == 12:  # types a broker never sends to a client
        return bytes((rng.choice((0x00, 0x10, 0x50, 0x60, 0x70, 0x80, 0xA0, 0xB0, 0xC0, 0xE0, 0xF0)),)) + b"\x00"
    if k == 13:  # short acks
        return rng.choice((b"\x20\x00", b"\x20\x01\x00", b"\x40\x01\x00", b"\x90\x02\x00\x01", b"\xd0\x01\x00"))
    if k == 14:
        return random_bytes(rng, 1, 12)
    return _publish(b"x", b"\r\nOK\r\n" * rng.randint(0, 3), 1, rng.randrange(1, 65536))


class _Stream:
    """Hands out the fuzz reads, then b'' (end of stream); records writes; checks the session's buffer per read."""

    def __init__(self, reads):
        self.reads = reads
        self.i = 0
        self.written = []
        self.closed = False
        self.session = None
        self.worst = 0

    async def read(self, n):
        s = self.session
        held = len(s._rx)
        if held > self.worst:
            self.worst = held
        if self.i >= len(self.reads):
            return b""
        data = self.reads[self.i]
        self.i += 1
        return data[:n]

    async def write(self, data):
        self.written.append(bytes(data))

    def close(self):
        self.closed = True


def _session(stream):
    got = []
    s = mqtt_session.Session(stream, "fuzz", keepalive=60, on_message=lambda t, m: got.append((t, m)))
    stream.session = s
    # a session mid-life: one PUBACK reserved before sending, one SUBACK already being awaited
    s._waiters[(0x40, 1)] = None
    s._waiters[(0x90, 2)] = [mqtt_session.asyncio.Event(), None]
    return s, got


def _drive(s):
    """Step the reader coroutine to its end; 'suspended' if it waited on anything (it must not here)."""
    coro = s._reader()
    try:
        coro.send(None)
    except StopIteration:
        return None
    coro.close()
    return "suspended"


def _reads(rng, stream):
    most = rng.choice((1, 2, 7, 64, _READ, _READ))
    if most * 16 < len(stream):  # byte-at-a-time only for short streams: the cost is in read count
        most = rng.choice((64, _READ))
    return chunks(rng, stream, most)


def _oracle(camp, rng):
    """A clean stream of well-formed QoS 0/1 PUBLISH and acks: every message delivered intact, every QoS 1 acked."""
    sent, expect_acks, parts = [], [], []
    for _ in range(rng.randint(1, 6)):
        k = rng.randrange(5)
        if k == 0:
            parts.append(rng.choice((b"\xd0\x00", b"\x40\x02\x00\x07", b"\x90\x03\x00\x02\x01")))
            continue
        if k == 4:  # oversize: skipped, not delivered, but a QoS 1 one is still acknowledged
            qos, pid = rng.randrange(2), rng.randrange(1, 65536)
            topic = rng.choice((b"bdmeter/t/cmd", b"x" * rng.randint(1, 300)))
            parts.append(_publish(topic, b"\x00" * rng.randint(_MAX_IN, 3 * _MAX_IN), qos, pid))
            if qos:
                expect_acks.append(b"\x40\x02" + struct.pack("!H", pid))
            continue
        topic = rng.choice((b"bdmeter/t/cmd", b"a/b", b"x" * rng.randint(1, 300)))
        payload = random_bytes(rng, 0, rng.choice((10, 500, 3000)))
        qos = rng.randrange(2)
        pid = rng.randrange(1, 65536)
        parts.append(_publish(topic, payload, qos, pid))
        sent.append((topic, payload))
        if qos:
            expect_acks.append(b"\x40\x02" + struct.pack("!H", pid))
    data = b"".join(parts)
    st = _Stream(_reads(rng, data))
    s, got = _session(st)
    why = _drive(s)
    if why or s.dead != "stream closed by peer" or got != sent or st.written != expect_acks:
        camp.fail(data, "clean stream misread: %s, dead=%r, %d of %d messages, acks %r" % (
            why, s.dead, len(got), len(sent), st.written[:3]))
    else:
        camp.outcome("clean_ok")


def test_fuzz_mqtt_incoming_packets():
    camp = Campaign("mqtt")
    bound = _MAX_IN + 5 + _READ  # one packet short of complete plus one read

    def one(rng):
        if rng.randrange(8) == 0:
            _oracle(camp, rng)
            return
        data = b"".join(_packet(rng) for _ in range(rng.randint(1, 6)))
        if rng.randrange(3) == 0:
            data = mutate(rng, data)
        st = _Stream(_reads(rng, data))
        s, got = _session(st)
        try:
            why = _drive(s)
        except Exception as e:
            camp.fail(data, "%s escaped the reader: %s" % (type(e).__name__, e), e)
            return
        if why:
            camp.fail(data, why)
        elif st.worst > bound or (s._big is not None and s._big[0] < 0):
            camp.fail(data, "receive buffer held %d bytes (bound %d), skip %r" % (st.worst, bound, s._big))
        elif s.dead == "stream closed by peer":
            camp.outcome("closed_by_peer")
        elif s.dead and s.dead.startswith("protocol error:"):
            camp.outcome("protocol_error")
        else:
            camp.fail(data, "reader ended with %r" % (s.dead,))
            return
        if got:
            camp.outcome("delivered")
        if s.stats["oversize"]:
            camp.outcome("oversize_skipped")
        if st.written:
            camp.outcome("puback_sent")
        if s._waiters.get((0x40, 1)) is not None:  # the reserved PUBACK slot kept its early answer
            camp.outcome("ack_matched")

    camp.run("packets", count(100_000), one)
    rep = camp.check()
    if rep["scale"] >= 1:
        for kind in ("closed_by_peer", "protocol_error", "delivered", "oversize_skipped", "puback_sent",
                     "ack_matched", "clean_ok"):
            assert rep["outcomes"].get(kind), "no input ended in %s" % kind
