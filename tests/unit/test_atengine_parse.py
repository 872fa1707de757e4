"""AT line handling (atlines, and the engine's routing), the Quectel parsers and URC bookkeeping, without I/O."""

import atengine
import quectel
import quectel_gnss
from portable import raises
from quectel_socket import Socket


def _engine():
    return atengine.AT(None)


def test_response_prefix():
    assert atengine.response_prefix("AT+CSQ") == "+CSQ:"
    assert atengine.response_prefix("AT+CPIN?") == "+CPIN:"
    assert atengine.response_prefix('AT+QGPSGNMEA="RMC"') == "+QGPSGNMEA:"
    assert atengine.response_prefix("AT+QIRD=0,1500") == "+QIRD:"
    assert atengine.response_prefix("ATE0") is None and atengine.response_prefix("AT") is None


def test_final_kinds_and_codes():
    for line in ("OK", "ERROR", "SEND OK", "SEND FAIL"):
        assert atengine.final_kind(line) == line
    assert atengine.final_kind("+CME ERROR: 14") == "+CME ERROR"
    assert atengine.final_kind("+CMS ERROR: 500") == "+CMS ERROR"
    assert atengine.final_kind("+CSQ: 1,2") is None and atengine.final_kind("OKAY") is None
    assert atengine.error_code("+CME ERROR: 14") == 14
    assert atengine.error_code("+CME ERROR: SIM busy") is None


def test_response_with_echo_and_urc_inside():
    at = _engine()
    got = []
    at.on_urc("+QIURC:", got.append)
    c = at._begin("AT+CSQ")
    at.feed(b'AT+CSQ\r\r\n+CSQ: 9,99\r\n\r\n+QIURC: "recv",0\r\n\r\nOK\r\n')
    assert c.final == "OK" and c.lines == ["+CSQ: 9,99"]
    assert got == ['+QIURC: "recv",0'] and at.stats["echo"] == 1 and at.stats["urcs"] == 1


def test_raw_payload_fed_byte_by_byte():
    at = _engine()
    payload = b"\r\nOK\r\n+QIURC: x\r\n\xff"
    c = at._begin("AT+QIRD=0,1500", data_prefix="+QIRD:")
    for b in b"\r\n+QIRD: %d\r\n" % len(payload) + payload + b"\r\n\r\nOK\r\n":
        at.feed(bytes([b]))
    assert c.final == "OK" and c.data_len == len(payload)
    assert bytes(at._data[:c.data_len]) == payload
    assert at.stats["urcs"] == 0 and at.stats["garbage"] == 0


def test_prompt_then_send_result():
    at = _engine()
    c = at._begin("AT+QISEND=0,3", want_prompt=True)
    at.feed(b"\r\n> ")
    assert c.prompted and c.final is None
    at.feed(b"\r\nSEND FAIL\r\n")
    assert c.final == "SEND FAIL"
    e = raises(atengine.ATError, at._check, c, c.lines)
    assert e.final == "SEND FAIL" and e.code is None


def test_error_results_raise_with_code():
    at = _engine()
    c = at._begin("AT+CPIN?")
    at.feed(b"\r\n+CME ERROR: 10\r\n")
    e = raises(atengine.ATError, at._check, c, c.lines)
    assert (e.code, e.final) == (10, "+CME ERROR") and at.stats["errors"] == 1


def test_rdy_interrupts_a_command_and_is_reported():
    at = _engine()
    calls = []
    at.on_rdy = lambda: calls.append(1)
    c = at._begin("AT+CSQ")
    at.feed(b"\r\nRDY\r\n")
    assert c.final == "RDY" and calls == [1] and at.stats["rdy"] == 1
    raises(atengine.ATReboot, at._check, c, c.lines)
    at._cur = None
    at.feed(b"\r\nRDY\r\n")
    assert calls == [1, 1] and at.stats["rdy"] == 2


def test_garbage_and_overflow_are_counted():
    at = _engine()
    at.feed(b"\xff\xfe\x80\r\n")
    assert at.stats["garbage"] == 3 and at.stats["stray"] == 0
    at.feed(b"A" * 3000)
    at.feed(b"\r\n")
    assert at.stats["overflow"] == 2 and at.stats["stray"] == 1
    c = at._begin("AT")
    at.feed(b"\r\n\xc3OK\r\n")  # noise glued to the result
    assert c.final == "OK" and at.stats["garbage"] == 3 + 2048 + 1


def test_owned_prefix_is_a_response_not_a_urc():
    at = _engine()
    got = []
    at.on_urc("+CPIN:", got.append)
    c = at._begin("AT+CPIN?")
    at.feed(b"\r\n+CPIN: READY\r\n\r\nOK\r\n")
    assert c.lines == ["+CPIN: READY"] and got == []
    at._cur = None
    at.feed(b"\r\n+CPIN: READY\r\n")
    assert got == ["+CPIN: READY"]


def test_driver_parsers():
    assert quectel.parse_csq(["+CSQ: 23,99"]) == 23 and quectel.parse_csq(["+CSQ: 99,99"]) is None
    assert quectel.parse_cereg(["+CEREG: 0,5"]) == 5 and quectel.parse_cereg(["OK?"]) is None
    assert quectel.parse_qlts(['+QLTS: "2026/09/11,14:22:25+32,0"']) == (2026, 9, 11, 14, 22, 25)
    assert quectel.parse_qlts(['+QLTS: ""']) is None
    assert quectel.parse_imei(["861234567890123"]) == "861234567890123"
    assert quectel.parse_imei(["+CGSN: 861234567890123"]) == "861234567890123"
    assert quectel.parse_iccid(["+QCCID: 8986001234567890123F"]) == "8986001234567890123F"
    loc = quectel_gnss.parse_loc("+QGPSLOC: 061951.000,40.84250,111.74900,1.1,1065.0,3,0.00,0.0,0.0,110926,09")
    assert loc["lat"] == 40.8425 and loc["nsat"] == 9 and loc["fix"] == 3 and loc["date"] == "110926"
    assert quectel_gnss.parse_loc("+QGPSLOC: 1,2") is None


def test_backoff_grows_with_jitter_and_cap():
    m = quectel.Quectel(None, backoff_base_ms=100, backoff_max_ms=1000)
    for attempt, hi in ((1, 100), (2, 200), (3, 400), (5, 1000), (30, 1000)):
        for _ in range(20):
            d = m.backoff_ms(attempt)
            assert hi // 2 <= d <= hi


def test_socket_urcs_and_pdp_loss():
    m = quectel.Quectel(None)
    m._up = m._pdp = True
    s0, s1 = Socket(m, 0), Socket(m, 1)
    m._sockets[0], m._sockets[1] = s0, s1
    m._on_qiurc('+QIURC: "recv",0')
    assert s0._pending and not s1._pending
    m._on_qiurc('+QIURC: "closed",1')
    assert s1.closed and 1 in m._stale and m.stats["socket_closed"] == 1
    assert m.ready
    m._on_qiurc('+QIURC: "pdpdeact",1')
    assert not m.ready and s0.closed and not s0._pending and m._sockets == {} and m.stats["pdp_lost"] == 1


def test_unexpected_rdy_marks_reinit():
    m = quectel.Quectel(None)
    m._up = m._pdp = True
    s = Socket(m, 0)
    m._sockets[0] = s
    m._stale.add(3)
    m.at.feed(b"\r\nRDY\r\n")
    assert not m.ready and m._need_reinit and s.closed and not m._stale
    assert m.stats["rdy"] == 1 and m.stats["rdy_unexpected"] == 1


def test_out_of_range_data_count_is_refused():
    for header in (b"+QIRD: -5", b"+QIRD: 99999", b"+QIRD: x"):
        at = _engine()
        c = at._begin("AT+QIRD=0,1500", data_prefix="+QIRD:")
        at.feed(header + b"\r\nabc\r\nOK\r\n")
        assert c.final == "OK" and at._raw_left == 0 and c.data_len == 0 and len(at._data) == 1536
        assert at.stats["bad_data"] == 1
