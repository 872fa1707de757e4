"""Fuzzing the AT engine's receive side: random response streams, cut at random points, never crash or grow.

Streams are built from realistic pieces (responses, finals, URCs, echo, RDY,
`+QIRD: n` headers with raw payloads that contain `\\r\\nOK\\r\\n`, prompts,
blank lines, garbage, non-UTF-8, overlong runs), sometimes mutated, and fed
through `AT.feed` in random chunks while a random kind of command is in
flight. After every chunk the engine's buffers must be within their bounds;
one input in ten is a clean stream whose raw payload and final are checked.
"""

import atengine
from fuzzkit import Campaign, Runaway, chunks, count, mutate, random_bytes

_RXBUF = 1024
_DATABUF = 1536
_SESSION = 200  # inputs fed to one engine before a fresh one (state carries over between inputs)

# (command text, wants a prompt, data prefix, data field)
_COMMANDS = (
    None,
    ("AT+CSQ", False, None, 0),
    ("ATI", False, None, 0),
    ("AT+QGPSLOC=2", False, None, 0),
    ("AT+QIRD=0,1500", False, "+QIRD:", 0),
    ("AT+QISEND=0,12", True, None, 0),
    ("AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",1883,0,0", False, None, 0),
)
_RESPONSES = (b"+CSQ: 23,99", b"+CSQ: 99,99", b"Quectel", b"EC800M", b"Revision: EC800MCNLER06A01M08",
              b"861234567890123", b"+QGPSLOC: 063537.000,3958.7900N,11618.6030E,1.0,55.0,3,000.00,0.0,0.0,220524,08",
              b'+QISTATE: 0,"TCP","127.0.0.1",1883,0,2,1,0,0,"uart1"', b"+QIRD: 0",
              b"+QGPSGNMEA: $GNRMC,,V,,,,,,,,,,N*4D",
              b"+CREG: 0,1", b"+QIGETERROR: 0,operation successful", b"+CCLK: \"24/05/22,06:35:37+32\"")
_FINALS = (b"OK", b"OK", b"ERROR", b"+CME ERROR: 505", b"+CME ERROR: 14", b"+CME ERROR: SIM not inserted",
           b"+CMS ERROR: 500", b"SEND OK", b"SEND FAIL", b"+CME ERROR:", b"+CME ERROR: 99999999999999999999")
_URCS = (b'+QIURC: "recv",0', b'+QIURC: "closed",0', b'+QIURC: "pdpdeact",1', b"+QIOPEN: 0,0", b"+QIOPEN: 0,566",
         b"+CFUN: 1", b"+CPIN: READY", b"+QIND: SMS DONE", b"+QGPSURC: \"fix\"", b"POWERED DOWN", b"+CEREG: 1",
         b"+QUSIM: 1", b"+QIND: PB DONE", b"+CTZV: +32")
_COUNTERS = ("garbage", "overflow", "bad_data", "handler_errors", "stray", "echo", "rdy")
_EOLS = (b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"", b"\r\r\n")


def _payload(rng):
    n = rng.choice((0, 1, 5, 12, rng.randint(0, 64), rng.randint(0, 1500), 1500))
    body = bytearray(random_bytes(rng, n, n))
    for _ in range(rng.randint(0, 3)):  # the payload may hold what looks like a final or a URC
        i = rng.randint(0, len(body))
        body[i:i] = rng.choice((b"\r\nOK\r\n", b"\r\nERROR\r\n", b"RDY", b'\r\n+QIURC: "recv",0\r\n', b"\n", b"> "))
    return bytes(body)


def _data_block(rng):
    payload = _payload(rng)
    n = len(payload)
    k = rng.randrange(10)
    if k == 0:  # the header's count disagrees with what follows
        n = max(0, n + rng.randint(-20, 20))
    elif k == 1:  # a count no answer has
        n = rng.choice((-1, -5, 1501, 1536, 1537, 4096, 10 ** 5, 10 ** 12))
    count_text = b"%d" % n if rng.randrange(12) else rng.choice((b"", b"x", b" ", b"1,2", b"0x10", b"--1"))
    return b"+QIRD: " + count_text + b"\r\n" + payload + b"\r\nOK\r\n"


def _stream(rng, cmd_text):
    out = []
    for _ in range(rng.randint(1, 10)):
        k = rng.randrange(20)
        eol = rng.choice(_EOLS)
        if k < 4:
            out.append(rng.choice(_RESPONSES) + eol)
        elif k < 7:
            out.append(rng.choice(_FINALS) + eol)
        elif k < 10:
            out.append(rng.choice(_URCS) + eol)
        elif k == 10:
            out.append((cmd_text or "AT").encode() + rng.choice((b"\r", b"\r\r\n", b"\r\n")))
        elif k == 11:
            out.append(b"\r\nRDY\r\n" if rng.randrange(4) else b"RDY")
        elif k == 12:
            out.append(_data_block(rng))
        elif k == 13:
            out.append(rng.choice((b"> ", b">", b"\r\n> ", b">>")))
        elif k == 14:
            out.append(rng.choice((b"\r\n", b"\n", b"\r", b"  \t\r\n", b"\x00\r\n")))
        elif k == 15:
            out.append(random_bytes(rng, 1, 40))
        elif k == 16:  # not UTF-8: stray high bytes in an otherwise normal line
            out.append(b"+CSQ: \xff\xfe2\xc3" + eol)
        elif k == 17:
            out.append(bytes(rng.randrange(32, 256) for _ in range(rng.randint(1, 30))) + eol)
        elif k == 18 and rng.randrange(4) == 0:  # longer than the line buffer, no newline
            out.append(b"Z" * rng.randint(_RXBUF - 8, 2 * _RXBUF + 100))
        else:
            out.append(b"+QIURC: \"recv\",0\r\n\r\nOK\r\n")
    return b"".join(out)


class _Uart:
    def write(self, buf):
        return len(buf)


def _guarded_bytearray(*args):
    # The engine's receive buffers have a documented size; asking for more on the word of a received line is a bug.
    if args and isinstance(args[0], int) and args[0] > _DATABUF:
        raise Runaway("bytearray(%d) requested by the receive path" % args[0])
    return bytearray(*args)


class _Rig:
    """One engine with a URC handler that sometimes fails and a pending URC waiter."""

    def __init__(self):
        self.at = atengine.AT(_Uart())
        self.urcs = []
        self.rdy = 0
        self.at.on_urc("+QIURC:", self.urcs.append)
        self.at.on_urc("+QGPSURC:", self._bad_handler)
        self.at.on_rdy = self._on_rdy

    def _bad_handler(self, line):
        raise ValueError("handler bug: " + line)

    def _on_rdy(self):
        self.rdy += 1

    def command(self, spec):
        at = self.at
        if spec is None:
            at._cur = None
            return None
        c = at._rec
        c.reset(*spec)
        at._cur = c
        return c


def _invariants(at):
    """None when every receive-side bound holds, else what broke."""
    if len(at._buf) != _RXBUF:
        return "line buffer resized to %d" % len(at._buf)
    if not 0 <= at._pos <= at._len <= len(at._buf):
        return "line buffer indices pos=%d len=%d" % (at._pos, at._len)
    if len(at._data) != _DATABUF:
        return "data buffer resized to %d" % len(at._data)
    c = at._rec
    if not 0 <= at._raw_left <= len(at._data) or not 0 <= c.data_len <= len(at._data) \
            or c.data_len + at._raw_left > len(at._data):
        return "data counters raw_left=%d data_len=%d" % (at._raw_left, c.data_len)
    if len(at._waiters) > 1 or len(at._handlers) != 2:
        return "waiters or handlers changed"
    return None


def test_qird_count_out_of_range_is_refused():
    """`+QIRD: <n>` with n < 0 or n beyond the data buffer is refused, not trusted (found by this fuzzer)."""
    for n in (-5, 99999):
        at = atengine.AT(_Uart())
        c = at._rec
        c.reset("AT+QIRD=0,1500", False, "+QIRD:", 0)
        at._cur = c
        at.feed(b"+QIRD: %d\r\nabc\r\nOK\r\n" % n)
        assert at._raw_left == 0 and c.data_len == 0 and len(at._data) == _DATABUF, (n, at._raw_left, c.data_len,
                                                                                      len(at._data))
        assert c.final == "OK"


def _oracle(camp, rng):
    """A clean QIRD exchange in random chunks: the payload comes out byte for byte, URCs reach their handler."""
    rig = _Rig()
    at = rig.at
    c = rig.command(("AT+QIRD=0,1500", False, "+QIRD:", 0))
    payload = _payload(rng)[:1500]
    before = [rng.choice(_URCS[:3]) for _ in range(rng.randint(0, 2))]
    after = [rng.choice(_URCS[:3]) for _ in range(rng.randint(0, 2))]
    stream = b"".join(u + b"\r\n" for u in before) + b"AT+QIRD=0,1500\r\r\n" + b"+QIRD: %d\r\n" % len(payload) \
        + payload + b"\r\n" + b"".join(u + b"\r\n" for u in after) + b"OK\r\n"
    for piece in chunks(rng, stream, rng.choice((1, 7, 64, 2048)) if len(stream) < 40 else rng.choice((64, 2048))):
        at.feed(piece)
    got = bytes(at._data[:c.data_len])
    qiurc = [u.decode() for u in before + after if u.startswith(b"+QIURC:")]
    if c.final != "OK" or got != payload or c.lines != ["+QIRD: %d" % len(payload)] or rig.urcs != qiurc:
        camp.fail(stream, "clean QIRD exchange misread: final=%r lines=%r got %d bytes" % (c.final, c.lines[:3],
                                                                                         len(got)))
    else:
        camp.outcome("clean_qird_ok")


def test_fuzz_at_response_streams():
    camp = Campaign("at")
    state = {"rig": _Rig(), "fed": 0}

    def one(rng):
        if rng.randrange(10) == 0:
            _oracle(camp, rng)
            return
        if state["fed"] >= _SESSION:
            state["rig"], state["fed"] = _Rig(), 0
        state["fed"] += 1
        rig = state["rig"]
        at = rig.at
        spec = rng.choice(_COMMANDS)
        if at._cur is None or rng.randrange(3) == 0:  # keep a command in flight across inputs now and then
            rig.command(spec)
        if not at._waiters and rng.randrange(4) == 0:
            at._add_waiter(rng.choice(("+QIOPEN:", "+QIURC: \"recv\"", "+CPIN:")))
        stream = _stream(rng, spec[0] if spec else None)
        if rng.randrange(3) == 0:
            stream = mutate(rng, stream)
        most = rng.choice((1, 3, 16, 64, 256, 4096))
        if most * 24 < len(stream):  # byte-at-a-time only for short streams: the cost is in chunk count
            most = 64 if len(stream) < 2048 else 512
        st = at.stats
        before = [st.get(k, 0) for k in _COUNTERS]
        try:
            for piece in chunks(rng, stream, most):
                at.feed(piece)
                broken = _invariants(at)
                if broken:
                    raise AssertionError(broken)
        except (Exception, Runaway) as e:
            camp.fail(stream, "%s: %s" % (type(e).__name__, e), e)
            state["rig"], state["fed"] = _Rig(), 0
            return
        for k, v in zip(_COUNTERS, before):  # which counters this input moved: bad input ends in a counter
            if st.get(k, 0) != v:
                camp.outcome("counted_" + k)
        c = at._cur
        camp.outcome("final_" + (c.final or "none").replace(" ", "_") if c else "no_command")
        if at._waiters and at._waiters[0][2] is not None:
            at._waiters.clear()
            camp.outcome("waiter_resolved")

    atengine.bytearray = _guarded_bytearray  # module-global shadow: the receive path's allocations are checked
    try:
        camp.run("streams", count(100_000), one)
    finally:
        del atengine.bytearray
    rep = camp.check()
    if rep["scale"] >= 1:  # the generator reached every kind of ending
        for kind in ("final_OK", "final_ERROR", "final_+CME_ERROR", "final_SEND_OK", "final_RDY", "no_command",
                     "clean_qird_ok", "waiter_resolved"):
            assert rep["outcomes"].get(kind), "no input ended in %s" % kind
