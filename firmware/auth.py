"""Authentication of server commands: size, envelope, HMAC-SHA256, time window, nonce replay.

The wire form is in docs/PROTOCOL.md: {"body": "<JSON text>", "mac": "<hex>"},
signed over b"bdmeter-cmd-v1\\n" + terminal id + b"\\n" + body. Checks run in
that order so nothing of an unauthenticated body is acted on. Seen nonces are
kept on flash, so a reboot does not reopen the replay window.
"""

import hashlib
import json
import os
from binascii import hexlify, unhexlify

MAX_ENVELOPE = 1024
_MAX_NONCES = 256
_BLOCK = 64


class Refused(Exception):
    """A command that must not run; `code` is the error word sent back, `id` the request id if known."""

    def __init__(self, code, req_id=None):
        super().__init__(code)
        self.code = code
        self.id = req_id


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104); MicroPython has hashlib.sha256 but no hmac module."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def canonical(tid, body):
    return b"bdmeter-cmd-v1\n" + tid.encode() + b"\n" + body.encode()


def sign(key_hex, tid, body):
    """The hex MAC of `body` for terminal `tid` (what a server computes)."""
    return hexlify(hmac_sha256(unhexlify(key_hex), canonical(tid, body))).decode()


def equal(a, b):
    """Constant-time comparison of two byte strings."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= x ^ y
    return diff == 0


def _req_id(body):
    rid = body.get("id") if isinstance(body, dict) else None
    return rid if isinstance(rid, str) and 0 < len(rid) <= 40 else None


def _peek_id(body_text):
    try:
        return _req_id(json.loads(body_text))
    except (ValueError, RuntimeError):  # RuntimeError: nesting too deep for the parser
        return None


class Auth:
    def __init__(self, tid, key_hex, max_skew_s=300, state_path=None, log=None):
        self.tid = tid
        self.key = unhexlify(key_hex) if key_hex else None
        self.max_skew_s = max_skew_s
        self.path = state_path
        self.log = log
        self.refused = 0
        self._nonces = {}  # nonce -> ts of the command that used it
        # Commands no newer than the newest nonce ever evicted are refused as replays: an evicted nonce
        # could otherwise be used again. The floor is kept on flash with the nonces (as nonce "").
        self._floor = 0
        self._load()

    def _load(self):
        if not self.path:
            return
        try:
            with open(self.path) as f:
                for nonce, ts in json.load(f):
                    if not isinstance(ts, int):
                        raise TypeError("nonce time")
                    if nonce == "":
                        self._floor = ts
                    else:
                        self._nonces[nonce] = ts
        except (OSError, ValueError, TypeError) as e:
            if self.log and not isinstance(e, OSError):
                self.log.warning("nonce store unreadable, starting empty: %s", e)

    def _save(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump([["", self._floor]] + [[n, t] for n, t in self._nonces.items()], f)
        os.rename(tmp, self.path)

    def check(self, payload, now, trusted):
        """The command body (dict) if `payload` may run; raises Refused otherwise (and counts it)."""
        try:
            return self._check(payload, now, trusted)
        except Refused:
            self.refused += 1
            raise

    def _check(self, payload, now, trusted):
        if len(payload) > MAX_ENVELOPE:
            raise Refused("too_large")
        try:
            env = json.loads(payload)
            body_text = env["body"]
            mac = env["mac"]
            if not isinstance(body_text, str) or not isinstance(mac, str) or len(mac) != 64:
                raise ValueError("envelope fields")
            mac = unhexlify(mac)
            signed = canonical(self.tid, body_text)  # may fail to encode (lone surrogates): malformed
        except (ValueError, KeyError, TypeError, UnicodeError, RuntimeError):
            raise Refused("malformed")
        if self.key is None or not equal(hmac_sha256(self.key, signed), mac):
            # not authentic (or no key configured): the id is echoed only so the server can match the answer
            raise Refused("bad_mac", _peek_id(body_text))
        # authentic from here on; still refuse malformed, old or replayed bodies
        try:
            body = json.loads(body_text)
        except (ValueError, RuntimeError):
            raise Refused("malformed")
        rid = _req_id(body)
        if not isinstance(body, dict) or rid is None:
            raise Refused("malformed", rid)
        ts, nonce, op, args = body.get("ts"), body.get("nonce"), body.get("op"), body.get("args", {})
        if not isinstance(ts, int) or isinstance(ts, bool) or not isinstance(nonce, str) \
                or not 8 <= len(nonce) <= 64 or not isinstance(op, str) or not isinstance(args, dict):
            raise Refused("malformed", rid)
        if not trusted or abs(ts - now) > self.max_skew_s:
            raise Refused("stale", rid)
        self._prune(now)
        if nonce in self._nonces or ts <= self._floor:
            raise Refused("replay", rid)
        self._nonces[nonce] = ts
        while len(self._nonces) > _MAX_NONCES:
            oldest = min(self._nonces, key=self._nonces.get)
            self._floor = max(self._floor, self._nonces.pop(oldest))
        self._save()
        body["args"] = args
        return body

    def _prune(self, now):
        horizon = now - 2 * self.max_skew_s
        for n in [n for n, t in self._nonces.items() if t < horizon]:
            del self._nonces[n]
