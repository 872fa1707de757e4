"""Synthetic, contract-conforming terminal messages and a minimal raw MQTT terminal (tests, benchmark)."""

import json
import socket
import struct


def dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def _head(seq, inc):
    """The start of a record: version 2 with the outbox incarnation `inc`, or version 1 without one."""
    return {"v": 1, "seq": seq} if inc is None else {"v": 2, "inc": inc, "seq": seq}


def status_online(ts, fw="0.1.0", tsrc="gnss"):
    return dumps({"v": 1, "state": "online", "fw": fw, "ts": ts, "tsrc": tsrc})


def register(seq, ts, meters, lat, lon, imei="861234567890123", why="connect", tsrc="gnss", inc=None):
    pos = {"lat": lat, "lon": lon, "alt": 1050.0, "hdop": 0.9, "nsat": 9, "n": 24} if lat is not None else None
    return dumps(dict(_head(seq, inc), ts=ts, tsrc=tsrc, why=why, meters=list(meters), pos=pos, imei=imei,
                      iccid="89860012345678901234", fw="0.1.0", csq=23))


def energy(seq, ts, meter, fwd, tsrc="gnss", inc=None):
    t = round(fwd / 4, 2)
    return dumps(dict(_head(seq, inc), ts=ts, tsrc=tsrc, meter=meter,
                      kwh={"fwd": round(fwd, 2), "t1": t, "t2": t, "t3": t, "t4": round(fwd - 3 * t, 2),
                           "rev": 0.0, "comb": round(fwd, 2)},
                      inst={"v": [230.1, 229.8, 230.4], "i": [1.2, 0.9, 1.0], "p": 0.71, "pf": 0.98, "f": 50.0}))


def heartbeat(ts, up, tsrc="gnss"):
    return dumps({"v": 1, "ts": ts, "tsrc": tsrc, "up": up, "csq": 23, "fix": True, "nsat": 9, "outbox": 0,
                  "heap": 48128, "heap_peak": 61440, "reset": "power",
                  "err": {"meter_timeouts": 0, "mqtt_reconnects": 0, "ladder": {"socket": 0, "pdp": 0}}})


def event(seq, ts, kind, data, tsrc="gnss", inc=None):
    return dumps(dict(_head(seq, inc), ts=ts, tsrc=tsrc, kind=kind, data=data))


# -- a raw MQTT 3.1.1 client: enough to connect with a last will, publish, and drop the link abruptly --

def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


class RawTerminal:
    """A TCP link to the broker speaking just CONNECT (with a retained QoS 1 will) and QoS 0 PUBLISH."""

    def __init__(self, port, client_id, will_topic, will_payload, keepalive_s=60, host="127.0.0.1", timeout_s=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        # flags: clean session, will, will QoS 1, will retain
        var = _str("MQTT") + bytes([4, 0x02 | 0x04 | 0x08 | 0x20]) + struct.pack("!H", keepalive_s)
        body = var + _str(client_id) + _str(will_topic) + _str(will_payload)
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        ack = self._read(4)
        if ack[0] != 0x20 or ack[3] != 0:
            raise ConnectionError("broker refused the connection: %r" % ack)

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the link")
            buf += chunk
        return buf

    def publish(self, topic, payload, retain=False):
        body = _str(topic) + payload
        self.sock.sendall(bytes([0x30 | (1 if retain else 0)]) + _varint(len(body)) + body)

    def drop(self):
        """Close the socket without DISCONNECT: the broker publishes the will."""
        self.sock.close()
