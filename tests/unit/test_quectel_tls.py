"""The module-TLS helpers without I/O: upload checksum, QFLST/QFUPL parsing, SSL context commands, URC routing."""

import atengine
import quectel
import quectel_files
import quectel_ssl
from portable import raises
from quectel_socket import Socket


def test_upload_checksum_is_the_xor_of_big_endian_words():
    assert quectel_files.checksum(b"") == 0
    assert quectel_files.checksum(b"\x12\x34\x56\x78") == 0x444C
    assert quectel_files.checksum(b"\x12\x34\x56") == 0x4434  # an odd last byte is paired with 0x00
    assert quectel_files.checksum(bytearray(b"\x00\x0f\x10")) == 0x100F
    data = bytes(range(256))
    x = 0
    for i in range(0, 256, 2):
        x ^= data[i] * 256 + data[i + 1]
    assert quectel_files.checksum(data) == x


def test_digest_tells_apart_what_the_module_checksum_cannot():
    a, b = b"MIIBfake", b"MIIBFAKE"
    assert quectel_files.checksum(a) == quectel_files.checksum(b)  # 0x2020 twice cancels out
    assert quectel_files.digest(a) != quectel_files.digest(b) and len(quectel_files.digest(a)) == 64


def test_file_list_and_upload_answers():
    lines = ['+QFLST: "UFS:ca.pem",1188', '+QFLST: "RAM:x.bin",2', '+QFLST: "bad",x', "junk"]
    assert quectel_files.parse_qflst(lines) == {"ca.pem": 1188, "RAM:x.bin": 2}
    assert quectel_files.parse_qfupl(["+QFUPL: 1188,2d13"]) == (1188, 0x2D13)
    assert quectel_files.parse_qfupl(["+QFUPL: 3,zz"]) is None and quectel_files.parse_qfupl([]) is None


def test_ssl_context_commands():
    s = quectel_ssl.settings(ctx=1, cacert="ca.pem")
    assert s["seclevel"] == 1 and s["ignorelocaltime"] == 0 and s["sni"] == 1
    assert quectel_ssl.commands(s) == ['AT+QSSLCFG="sslversion",1,3', 'AT+QSSLCFG="ciphersuite",1,0xFFFF',
                                       'AT+QSSLCFG="seclevel",1,1', 'AT+QSSLCFG="cacert",1,"ca.pem"',
                                       'AT+QSSLCFG="ignorelocaltime",1,0', 'AT+QSSLCFG="negotiatetime",1,60',
                                       'AT+QSSLCFG="sni",1,1']
    m = quectel_ssl.settings(cacert="ca.pem", clientcert="c.pem", clientkey="c.key", sni=False, verify_time=False)
    assert m["seclevel"] == 2 and m["ignorelocaltime"] == 1 and m["sni"] == 0
    assert 'AT+QSSLCFG="clientkey",1,"c.key"' in quectel_ssl.commands(m)
    n = quectel_ssl.settings(verify=False)
    assert n["seclevel"] == 0 and n["ignorelocaltime"] == 1
    raises(ValueError, quectel_ssl.settings, cacert="")
    raises(ValueError, quectel_ssl.settings, cacert="ca.pem", clientcert="c.pem")
    assert quectel_ssl.clock_command((2026, 11, 28, 9, 5, 7)) == 'AT+CCLK="26/11/28,09:05:07+00"'


def test_ssl_urcs_reach_only_tls_sockets():
    m = quectel.Quectel(None)
    m._up = m._pdp = True
    s0, s1 = Socket(m, 0), quectel_ssl.SslSocket(m, 1)
    m._sockets[0], m._sockets[1] = s0, s1
    m._on_qiurc('+QSSLURC: "recv",0')  # id 0 is a TCP socket: not its URC
    m._on_qiurc('+QSSLURC: "recv",1')
    assert not s0._pending and s1._pending
    m._on_qiurc('+QSSLURC: "closed",1')
    assert s1.closed and 1 in m._ssl_stale and 1 not in m._stale
    m.at.feed(b"\r\nRDY\r\n")
    assert not m._ssl_stale and s0.closed


def test_connect_line_is_an_upload_go_ahead():
    at = atengine.AT(None)
    c = at._begin('AT+QFUPL="a",3,5', want_prompt=True)
    at.feed(b"\r\nCONNECT\r\n")
    assert c.prompted and c.final is None
    at.feed(b"\r\n+QFUPL: 3,100f\r\n\r\nOK\r\n")
    assert c.final == "OK" and c.lines == ["+QFUPL: 3,100f"]
