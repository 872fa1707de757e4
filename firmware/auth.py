"""Authentication of server commands: size, envelope, HMAC-SHA256, time window, nonce replay.

The wire form is in docs/PROTOCOL.md: {"body": "<JSON text>", "mac": "<hex>"},
signed over b"bdmeter-cmd-v1\\n" + terminal id + b"\\n" + body. Checks run in
that order so nothing of an unauthenticated body is acted on. Seen nonces are
kept on flash, so a reboot does not reopen the replay window: as fixed-size digests in a
preallocated ring (a bounded number of bytes however long the nonces), saved by appending one
record per command and compacted now and then.
"""

import hashlib
import json
import os
from array import array
from binascii import hexlify, unhexlify

MAX_ENVELOPE = 1024
NONCES = 512  # nonces remembered: 12 bytes each (an 8-byte digest and the command's ts), 6 KB in all
_DIG = 8
_REC = 12  # one record on flash: digest + ts (big-endian u32)
_FLOOR_MARK = b"\xff" * _DIG  # a record that raises the replay floor instead of naming a nonce
_BLOCK = 64
_HEX = b"0123456789abcdef"


class Refused(Exception):
    """A command that must not run; `code` is the error word sent back, `id` the request id if known."""

    def __init__(self, code, req_id=None):
        super().__init__(code)
        self.code = code
        self.id = req_id


def hmac_pads(key):
    """The inner and outer padded keys of HMAC-SHA256 for `key` (computed once per key, not per message)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def hmac_sha256(key, msg, pads=None):
    """HMAC-SHA256 (RFC 2104); MicroPython has hashlib.sha256 but no hmac module."""
    ipad, opad = pads or hmac_pads(key)
    inner = hashlib.sha256(ipad)
    inner.update(msg)
    outer = hashlib.sha256(opad)
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


def _u32(b, i):
    return b[i] << 24 | b[i + 1] << 16 | b[i + 2] << 8 | b[i + 3]


class Nonces:
    """The nonces of recent commands, bounded in bytes, kept on flash by appending; and the replay floor.

    A command is a replay if its nonce is remembered or its ts is at or below the floor. The floor is
    the newest ts of any nonce forgotten (pruned out of the window, or evicted to make room), so a
    forgotten nonce can never be used again, even when the clock is later moved back.
    """

    def __init__(self, path=None, log=None, size=NONCES):
        self.path = path
        self.log = log
        self.size = size
        self.floor = 0
        self._dig = bytearray(size * _DIG)
        self._ts = array("I", bytes(4 * size))  # 0 = free slot
        self._n = 0
        self._records = 0  # records in the file; compacted past 2 x size
        self._rec = bytearray(_REC)
        self._load()

    def __len__(self):
        return self._n

    @staticmethod
    def digest(nonce):
        return hashlib.sha256(nonce.encode()).digest()[:_DIG]

    def _find(self, d):
        dig, start = self._dig, 0
        while True:
            i = dig.find(d, start)
            if i < 0:
                return -1
            if i % _DIG == 0 and self._ts[i // _DIG]:
                return i // _DIG
            start = i + 1

    def seen(self, nonce, ts):
        return ts <= self.floor or self._find(self.digest(nonce)) >= 0

    def prune(self, horizon):
        """Forget nonces with ts below `horizon` (out of any window); the floor rises to the newest forgotten."""
        tsa, top = self._ts, 0
        for i in range(self.size):
            t = tsa[i]
            if t and t < horizon:
                tsa[i] = 0
                self._n -= 1
                if t > top:
                    top = t
        if top > self.floor:
            self._raise_floor(top)

    def add(self, nonce, ts):
        """Remember `nonce`; False (nothing stored) when the store is full of commands no older than `ts`."""
        slot = self._slot(ts, False)
        if slot < 0:
            return False
        d = self.digest(nonce)
        self._put(slot, d, ts)
        self._append(d, ts)
        return True

    def _slot(self, ts, force):
        tsa = self._ts
        oldest = -1
        for i in range(self.size):
            t = tsa[i]
            if not t:
                return i
            if oldest < 0 or t < tsa[oldest]:
                oldest = i
        # full: evict the oldest, but only if that keeps `ts` above the floor it raises
        t = tsa[oldest]
        if t >= ts and not force:
            return -1
        tsa[oldest] = 0
        self._n -= 1
        if t > self.floor:
            self._raise_floor(t)
        return oldest

    def _put(self, slot, d, ts):
        self._dig[slot * _DIG:(slot + 1) * _DIG] = d
        self._ts[slot] = ts
        self._n += 1

    def _raise_floor(self, ts):
        self.floor = ts
        self._append(_FLOOR_MARK, ts)

    # -- flash -----------------------------------------------------------------
    def _pack(self, d, ts):
        r = self._rec
        r[0:_DIG] = d
        r[_DIG] = ts >> 24 & 0xFF
        r[_DIG + 1] = ts >> 16 & 0xFF
        r[_DIG + 2] = ts >> 8 & 0xFF
        r[_DIG + 3] = ts & 0xFF
        return r

    def _append(self, d, ts):
        if not self.path or self._loading:
            return
        if self._records >= 2 * self.size:
            self._compact()
            return
        with open(self.path, "ab") as f:
            f.write(self._pack(d, ts))
        self._records += 1

    def _compact(self):
        """Rewrite the file as the floor and the live nonces (atomically: temp file, rename)."""
        tmp = self.path + ".tmp"
        n = 1
        with open(tmp, "wb") as f:
            f.write(self._pack(_FLOOR_MARK, self.floor))
            mv = memoryview(self._dig)
            for i in range(self.size):
                t = self._ts[i]
                if t:
                    f.write(self._pack(mv[i * _DIG:(i + 1) * _DIG], t))
                    n += 1
        os.rename(tmp, self.path)
        self._records = n

    def _load(self):
        self._loading = True
        try:
            if self.path:
                self._read()
        finally:
            self._loading = False

    def _read(self):
        try:
            f = open(self.path, "rb")
        except OSError:
            self._migrate()
            return
        rec, whole = self._rec, True
        with f:
            while True:
                got = f.readinto(rec)
                if not got:
                    break
                if got < _REC:  # a record cut short by a power cut while appending
                    whole = False
                    break
                self._records += 1
                d, ts = bytes(rec[0:_DIG]), _u32(rec, _DIG)
                if d == _FLOOR_MARK:
                    self.floor = max(self.floor, ts)
                elif ts > self.floor and self._find(d) < 0:
                    self._put(self._slot(ts, True), d, ts)
        if not whole or self._records > 2 * self.size:
            self._compact()

    def _migrate(self):
        """The JSON store of earlier versions: its newest ts becomes the floor (nothing in it can run again)."""
        old = self.path.rsplit(".", 1)[0] + ".json"
        try:
            with open(old) as f:
                top = max([int(ts) for _, ts in json.load(f)] or [0])
        except (OSError, ValueError, TypeError):
            return
        self.floor = top
        self._compact()
        try:
            os.remove(old)
        except OSError:
            pass
        if self.log:
            self.log.info("nonce store converted; replay floor %d", top)


def _lower_hex(s):
    for c in s.encode():
        if c not in _HEX:
            return False
    return True


class Auth:
    def __init__(self, tid, key_hex, max_skew_s=300, state_path=None, log=None):
        self.tid = tid
        self.key = unhexlify(key_hex) if key_hex else None
        self._pads = hmac_pads(self.key) if self.key else None
        self.max_skew_s = max_skew_s
        self.log = log
        self.refused = 0
        self.nonces = Nonces(state_path, log)

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
            if not isinstance(body_text, str) or not isinstance(mac, str) or len(mac) != 64 \
                    or not _lower_hex(mac):
                raise ValueError("envelope fields")
            mac = unhexlify(mac)
            signed = canonical(self.tid, body_text)  # may fail to encode (lone surrogates): malformed
        except (ValueError, KeyError, TypeError, UnicodeError, RuntimeError):
            raise Refused("malformed")
        if self.key is None or not equal(hmac_sha256(self.key, signed, self._pads), mac):
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
        if not trusted or abs(ts - now) > self.max_skew_s or ts <= 0:
            raise Refused("stale", rid)
        self.nonces.prune(now - 2 * self.max_skew_s)
        if self.nonces.seen(nonce, ts):
            raise Refused("replay", rid)
        if not self.nonces.add(nonce, ts):
            raise Refused("busy", rid)
        body["args"] = args
        return body
