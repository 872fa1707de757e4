"""tcpuart: endpoint parsing (the part that runs without a peer)."""

from portable import raises
from tcpuart import parse_endpoint


def test_parse_endpoint():
    assert parse_endpoint("127.0.0.1:7001") == ("127.0.0.1", 7001)
    assert parse_endpoint("localhost:1") == ("localhost", 1)


def test_parse_endpoint_rejects_malformed():
    for bad in ("", "127.0.0.1", ":7001", "host:", "host:0", "host:65536", "host:x1"):
        raises(ValueError, parse_endpoint, bad)
