"""Signed server commands (docs/PROTOCOL.md "Commands"): canonical form, HMAC-SHA256, envelope."""

import hashlib
import hmac
import json
import os
import time

from tools.headend.contract import valid_id

DOMAIN = b"bdmeter-cmd-v1\n"
MAX_ENVELOPE = 1024
OPS = ("query", "read", "status", "config.get", "config.set", "sync_time", "reboot", "update")


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


def key_bytes(key):
    """A terminal's `cmd_key` (hex text or bytes) as bytes; at least 16 bytes."""
    if isinstance(key, str):
        try:
            key = bytes.fromhex(key.strip())
        except ValueError:
            raise ValueError("command key is not hex")
    if len(key) < 16:
        raise ValueError("command key shorter than 16 bytes")
    return bytes(key)


def canonical(tid, body):
    """The signed bytes: domain, terminal id and the body text, newline-separated."""
    return DOMAIN + tid.encode("utf-8") + b"\n" + body.encode("utf-8")


def mac(key, tid, body):
    """Lowercase hex HMAC-SHA256 of the canonical form."""
    return hmac.new(key_bytes(key), canonical(tid, body), hashlib.sha256).hexdigest()


def verify(key, tid, envelope):
    """The body (dict) of an envelope whose MAC verifies for `tid`, else None."""
    try:
        env = json.loads(envelope)
        body = env["body"]
        ok = hmac.compare_digest(mac(key, tid, body), str(env["mac"]))
        return json.loads(body) if ok else None
    except (ValueError, KeyError, TypeError):
        return None


def new_id():
    """A short request id, unique enough to match an answer."""
    return "q-%d-%s" % (int(time.time()), os.urandom(3).hex())


def body_text(op, args=None, req_id=None, ts=None, nonce=None):
    """The body JSON text, fields in the documented order."""
    if op not in OPS:
        raise ValueError("unknown op %r" % op)
    body = {"id": req_id or new_id(), "op": op, "args": args or {},
            "ts": int(time.time()) if ts is None else int(ts),
            "nonce": nonce or os.urandom(8).hex()}
    if not 1 <= len(body["id"]) <= 40 or not 8 <= len(body["nonce"]) <= 64:
        raise ValueError("id must be 1..40 chars and nonce 8..64 chars")
    return body["id"], _dumps(body)


def command(key, tid, op, args=None, req_id=None, ts=None, nonce=None):
    """(request id, envelope bytes) of a signed command for terminal `tid`."""
    if not valid_id(tid):
        raise ValueError("bad terminal id %r" % tid)
    req_id, body = body_text(op, args, req_id, ts, nonce)
    envelope = _dumps({"body": body, "mac": mac(key, tid, body)}).encode("utf-8")
    if len(envelope) > MAX_ENVELOPE:
        raise ValueError("command envelope over %d bytes" % MAX_ENVELOPE)
    return req_id, envelope
