"""lib/atengine under the unix port against a scripted peer that replies with exact, recorded byte sequences.

Covers echo, URCs inside responses and several in one chunk, a QIRD payload that
contains "\\r\\nOK\\r\\n" (whole and dribbled in 1..3-byte pieces), the prompt,
every error form (ERROR, +CME ERROR, +CMS ERROR, SEND FAIL, timeout), RDY in a
command and while idle, garbage glued to lines and a noise flood, a URC awaited
after OK, and an open result arriving inside the next command's response.
"""

import json
import random
import socket
import threading
import time

import pytest

from harness import LOOPBACK, ROOT, run_micropython

pytestmark = pytest.mark.port

GGA = b"$GNGGA,061951.00,4050.55000,N,11144.94000,E,1,12,0.90,1065.0,M,-20.0,M,,*4F"
PAYLOAD = b'ab\r\nOK\r\ncd\r\n+QIURC: "recv",0\r\n> \x00\xffRDY\r\nz'
SPLIT = bytes(range(256)) + b"\r\nOK\r\n" * 20 + bytes(range(255, -1, -1))
NOISE = bytes(random.Random(7).choice(b"abcXYZ019 +:,\x80\xfe\x07") for _ in range(3000))

TRANSCRIPT = [
    ("expect", b"AT+CSQ\r"), ("send", b"\r\n+CSQ: 23,99\r\n\r\nOK\r\n"),
    ("expect", b"AT+CGSN\r"), ("send", b"AT+CGSN\r\r\n861234567890123\r\n\r\nOK\r\n"),
    ("expect", b'AT+QGPSGNMEA="GGA"\r'),
    ("send", b"\r\n+QGPSGNMEA: " + GGA + b'\r\n\r\n+QIURC: "recv",0\r\n\r\nOK\r\n'),
    ("expect", b"AT+CPIN?\r"), ("send", b"\r\n+CPIN: READY\r\n\r\nOK\r\n"),
    ("expect", b"AT+TRIG=1\r"),
    ("send", b'\r\nOK\r\n\r\n+QIURC: "recv",1\r\n\r\n+QIURC: "closed",1\r\n\r\n+QIND: SMS DONE\r\n'
             b'\r\n+CPIN: READY\r\n\r\n+QGPSURC: "xtradata"\r\n'),
    ("expect", b"AT+QIRD=0,1500\r"), ("send", b"\r\n+QIRD: %d\r\n" % len(PAYLOAD) + PAYLOAD + b"\r\n\r\nOK\r\n"),
    ("expect", b"AT+QIRD=0,1500\r"), ("slow", b"\r\n+QIRD: %d\r\n" % len(SPLIT) + SPLIT + b"\r\n\r\nOK\r\n"),
    ("expect", b"AT+QIRD=0,1500\r"), ("send", b"\r\n+QIRD: 0\r\n\r\nOK\r\n"),
    ("expect", b"AT+QISEND=0,5\r"), ("send", b"\r\n> "), ("expect", b"he\r\nl"), ("send", b"\r\nSEND OK\r\n"),
    ("expect", b"AT+QISEND=0,3\r"), ("send", b"\r\n> "), ("expect", b"abc"), ("send", b"\r\nSEND FAIL\r\n"),
    ("expect", b"AT+QISEND=5,3\r"), ("send", b"\r\nERROR\r\n"),
    ("expect", b"AT+CPIN?\r"), ("send", b"\r\n+CME ERROR: 14\r\n"),
    ("expect", b"AT+CMGS=1\r"), ("send", b"\r\n+CMS ERROR: 500\r\n"),
    ("expect", b"AT+FOO\r"), ("send", b"\r\nERROR\r\n"),
    ("expect", b"AT+QIACT=1\r"),  # never answered
    ("expect", b"AT\r"), ("send", b"\r\nOK\r\n"),
    ("expect", b"AT+CFUN?\r"), ("send", b"\r\nRDY\r\n"),
    ("expect", b"AT+TRIG=2\r"), ("send", b"\r\nOK\r\n"), ("sleep", 0.05), ("send", b"\r\nRDY\r\n\r\n+CFUN: 1\r\n"),
    ("expect", b"AT+CSQ\r"), ("send", b"\xfe\xff\x80\r\n+CSQ: 5,99\r\n\x81\x82\x00\r\n\xc3OK\r\n"),
    ("expect", b"AT+TRIG=3\r"), ("send", b"\r\nOK\r\n"), ("send", NOISE), ("send", b"\r\n"),
    ("expect", b"AT\r"), ("send", b"\r\nOK\r\n"),
    ("expect", b'AT+QIOPEN=1,0,"TCP","h",1,0,0\r'), ("send", b"\r\nOK\r\n"), ("sleep", 0.05),
    ("send", b"\r\n+QIOPEN: 0,0\r\n"),
    ("expect", b'AT+QIOPEN=1,1,"TCP","h",1,0,0\r'), ("send", b"\r\nOK\r\n"),
    ("expect", b"AT+CSQ\r"), ("send", b"\r\n+CSQ: 17,99\r\n\r\n+QIOPEN: 1,0\r\n\r\nOK\r\n"),
]


class ScriptedPeer:
    """Plays TRANSCRIPT to one client: each expect must match the next bytes exactly."""

    def __init__(self, steps):
        self.steps = steps
        self.errors = []
        self.finished = False
        self.srv = socket.socket()
        self.srv.bind((LOOPBACK, 0))
        self.srv.listen(1)
        self.srv.settimeout(10)
        self.port = self.srv.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            conn, _ = self.srv.accept()
        except OSError as e:
            self.errors.append("no client: %s" % e)
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rng = random.Random(3)
        buf = b""
        with conn:
            for i, (op, arg) in enumerate(self.steps):
                if op == "expect":
                    deadline = time.monotonic() + 5
                    while len(buf) < len(arg) and time.monotonic() < deadline:
                        conn.settimeout(max(0.01, deadline - time.monotonic()))
                        try:
                            d = conn.recv(4096)
                        except TimeoutError:
                            break
                        if not d:
                            break
                        buf += d
                    if not buf.startswith(arg):
                        self.errors.append("step %d: expected %r, got %r" % (i, arg, buf[:80]))
                        return
                    buf = buf[len(arg):]
                elif op == "send":
                    conn.sendall(arg)
                elif op == "slow":
                    k = 0
                    while k < len(arg):
                        n = rng.randint(1, 3)
                        conn.sendall(arg[k:k + n])
                        k += n
                        time.sleep(0.001)
                elif op == "sleep":
                    time.sleep(arg)
            self.finished = True
            conn.settimeout(10)
            try:
                while True:  # anything after the transcript is a stray write
                    d = conn.recv(4096)
                    if not d:
                        break
                    buf += d
            except OSError:
                pass
            if buf:
                self.errors.append("unexpected bytes after the transcript: %r" % buf[:80])

    def stop(self):
        self.srv.close()
        self.thread.join(15)


@pytest.fixture(scope="module")
def cases():
    peer = ScriptedPeer(TRANSCRIPT)
    try:
        rc, out = run_micropython(ROOT / "tests/port/mp/modem_atengine.py", peer.port, timeout=60)
    finally:
        peer.stop()
    assert rc == 0, out
    assert peer.finished and not peer.errors, (peer.errors, out)
    got = {}
    for line in out.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            got[d["case"]] = d
    return got


def test_plain_response_and_echo(cases):
    assert cases["basic"]["result"] == ["+CSQ: 23,99"] and cases["basic"]["urcs"] == []
    assert cases["echo"]["result"] == ["861234567890123"]
    assert cases["stats"]["stats"]["echo"] == 1


def test_urc_inside_a_response_goes_to_its_handler(cases):
    c = cases["urc_inside"]
    assert c["result"] == ["+QGPSGNMEA: " + GGA.decode()]
    assert c["urcs"] == ['+QIURC: "recv",0']


def test_command_owns_its_prefix(cases):
    assert cases["owned_prefix"]["result"] == ["+CPIN: READY"] and cases["owned_prefix"]["urcs"] == []


def test_several_urcs_in_one_chunk(cases):
    c = cases["urc_chunk"]
    assert c["result"] == '+QGPSURC: "xtradata"'  # taken by the waiter
    assert c["urcs"] == ['+QIURC: "recv",1', '+QIURC: "closed",1', "+QIND: SMS DONE", "+CPIN: READY"]


def test_qird_reads_exact_bytes(cases):
    assert bytes.fromhex(cases["qird_ok_inside"]["hex"]) == PAYLOAD
    assert bytes.fromhex(cases["qird_split"]["hex"]) == SPLIT
    assert cases["qird_empty"]["hex"] == ""


def test_prompt_and_send_results(cases):
    assert cases["send_ok"]["result"] == []
    assert (cases["send_fail"]["error"], cases["send_fail"]["final"]) == ("ATError", "SEND FAIL")
    # ERROR instead of the prompt: the payload is never written (the peer would have seen it)
    assert (cases["send_error"]["error"], cases["send_error"]["final"], cases["send_error"]["code"]) == \
        ("ATError", "ERROR", None)


def test_error_forms(cases):
    assert (cases["cme_error"]["final"], cases["cme_error"]["code"]) == ("+CME ERROR", 14)
    assert (cases["cms_error"]["final"], cases["cms_error"]["code"]) == ("+CMS ERROR", 500)
    assert (cases["plain_error"]["final"], cases["plain_error"]["code"]) == ("ERROR", None)
    assert cases["timeout"]["error"] == "ATTimeout"
    assert cases["after_timeout"]["result"] == []
    assert cases["wait_urc_timeout"]["error"] == "ATTimeout"


def test_rdy_fails_the_command_and_is_reported(cases):
    assert cases["rdy_in_command"]["error"] == "ATReboot"
    assert cases["rdy_idle"]["rdy"] == 2 and cases["rdy_idle"]["calls"] == [1, 2]


def test_garbage_is_counted_and_skipped(cases):
    assert cases["garbage_glued"]["result"] == ["+CSQ: 5,99"]
    assert cases["after_noise"]["result"] == []
    st = cases["stats"]["stats"]
    assert st["garbage"] >= 2048 + 6
    assert st["overflow"] >= 2
    assert st["handler_errors"] == 0


def test_awaited_urc_even_inside_another_response(cases):
    assert cases["expect"]["result"] == ["+QIOPEN: 0,0"]
    assert cases["interleaved_csq"]["result"] == ["+CSQ: 17,99"]
    assert cases["interleaved_open"]["result"] == ["+QIOPEN: 1,0"]


def test_counters(cases):
    st = cases["stats"]["stats"]
    print("engine counters:", st)
    assert st["rdy"] == 2
    assert st["errors"] == 5  # SEND FAIL, ERROR (send), CME, CMS, ERROR
    assert st["timeouts"] == 2  # QIACT and the URC wait
    assert st["commands"] == 24
    assert st["stray"] == 1  # the printable tail of the noise flood


class _Rec:
    """A logger stand-in that keeps every formatted line."""

    def __init__(self):
        self.lines = []

    def _log(self, msg, *args):
        self.lines.append(msg % args if args else msg)

    debug = info = warning = error = _log


class _SinkUart:
    def write(self, b):
        return len(b)


def test_secrets_are_masked_in_traces_warnings_and_errors():
    import asyncio

    from atengine import AT, ATTimeout

    log = _Rec()
    at = AT(_SinkUart(), log=log)
    at.secret("s3cret-apn-pw")
    cmd = 'AT+QICSGP=1,1,"private.apn","user","s3cret-apn-pw",1'

    async def go():
        try:
            await at.cmd(cmd, 30)  # nothing answers: the timeout warning and the error name the command
        except ATTimeout as e:
            return str(e)

    err = asyncio.run(go())
    at.route('+QICSGP: 1,"private.apn","user","s3cret-apn-pw",1')  # a query's answer in the debug trace
    text = "\n".join(log.lines) + "\n" + err
    assert "s3cret-apn-pw" not in text, text
    assert 'AT+QICSGP=1,1,"private.apn","user","***",1' in text
    assert any(line.startswith("AT timeout: AT+QICSGP") for line in log.lines)
    assert any(line.startswith("AT> ") for line in log.lines) and any(line.startswith("AT< ") for line in log.lines)
