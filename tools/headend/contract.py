"""Validation of terminal messages against docs/PROTOCOL.md (versions 1 and 2): topics and JSON payloads."""

import json
import math
import re

VERSION = 2
# version 2 added the outbox incarnation `inc` to records; a version 1 record counts as inc ""
VERSIONS = (1, 2)
UPLINK_LEAVES = ("status", "register", "energy", "heartbeat", "event", "resp", "frozen", "meter_event", "settle")
RECORD_LEAVES = ("register", "energy", "event", "frozen", "meter_event", "settle")
TSRC = ("gnss", "net", "rtc", "none")
REGISTER_WHY = ("connect", "fix", "relocation", "boot")
KWH_KEYS = ("fwd", "t1", "t2", "t3", "t4", "rev", "comb")
INST_PHASED = ("v", "i")
INST_SCALAR = ("p", "pf", "f")
RESET_CAUSES = ("power", "wdt", "soft", "hard", "deepsleep", "unknown")

_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")
_METER = re.compile(r"^[0-9]{12}$")
_INC = re.compile(r"^[0-9a-f]{8}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_STAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?$")


class ContractError(Exception):
    """A topic or payload that breaks the contract; the message says which rule."""


def valid_id(text):
    """True when `text` may be a terminal id or topic prefix (A-Z a-z 0-9 - _ .)."""
    return isinstance(text, str) and bool(_ID.match(text))


def parse_topic(topic, prefix):
    """Split `<prefix>/<tid>/<leaf>` into (tid, leaf); raise ContractError otherwise."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != prefix:
        raise ContractError("topic: not %s/<tid>/<leaf>" % prefix)
    tid, leaf = parts[1], parts[2]
    if not valid_id(tid):
        raise ContractError("topic: bad terminal id")
    if leaf != "cmd" and leaf not in UPLINK_LEAVES:
        raise ContractError("topic: unknown leaf %r" % leaf[:20])
    return tid, leaf


def decode(payload):
    """Parse a payload (bytes) as a JSON object of a known version (1 or 2)."""
    try:
        obj = json.loads(payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload)
    except (UnicodeDecodeError, ValueError) as e:
        raise ContractError("json: %s" % str(e)[:60])
    if not isinstance(obj, dict):
        raise ContractError("json: not an object")
    if not _is_int(obj.get("v")) or obj["v"] not in VERSIONS:
        raise ContractError("v: not one of %s" % "/".join(str(v) for v in VERSIONS))
    return obj


def validate(leaf, obj, warnings=None):
    """Check a decoded payload for `leaf`; return it unchanged or raise ContractError.

    Tolerated deviations are appended to `warnings` (a list) when one is given.
    """
    _CHECKS[leaf](obj, warnings if warnings is not None else [])
    return obj


def parse(topic, payload, prefix, warnings=None):
    """Topic and payload to (tid, leaf, obj); `obj` is None for `cmd` (our own downlink)."""
    tid, leaf = parse_topic(topic, prefix)
    if leaf == "cmd":
        return tid, leaf, None
    return tid, leaf, validate(leaf, decode(payload), warnings)


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x):
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(x)


def _need(obj, key, check, what, nullable=False, optional=False):
    if key not in obj:
        if optional:
            return
        raise ContractError("%s: missing" % key)
    x = obj[key]
    if x is None and nullable:
        return
    if not check(x):
        raise ContractError("%s: not %s" % (key, what))


def _int_range(lo, hi=None):
    return lambda x: _is_int(x) and x >= lo and (hi is None or x <= hi)


def _num_range(lo, hi):
    return lambda x: _is_num(x) and lo <= x <= hi


def _one_of(choices):
    return lambda x: isinstance(x, str) and x in choices


def _is_str(x):
    return isinstance(x, str)


def _clock(obj):
    # ts is integral Unix seconds; a float with a fraction is tolerated and truncated by the store
    _need(obj, "ts", lambda x: _is_num(x) and x >= 0, "a time in seconds")
    _need(obj, "tsrc", _one_of(TSRC), "one of " + "/".join(TSRC))


def record_inc(obj):
    """The outbox incarnation of a validated record: its `inc`, or "" for a version 1 record without one."""
    return obj.get("inc", "")


def _record(obj):
    # version 2 records carry the outbox incarnation; a version 1 record may not
    _need(obj, "inc", lambda x: isinstance(x, str) and bool(_INC.match(x)), "8 lowercase hex digits",
          optional=obj["v"] < 2)
    _need(obj, "seq", _int_range(1), "an integer >= 1")
    _clock(obj)


def _status(obj, warnings):
    _need(obj, "state", _one_of(("online", "offline")), "online/offline")
    if obj["state"] == "online":
        _need(obj, "fw", _is_str, "a string")
        _clock(obj)
    else:
        # the last will carries only v and state
        _need(obj, "why", _is_str, "a string", optional=True)


def _pos(x):
    if not isinstance(x, dict):
        return False
    _need(x, "lat", _num_range(-90, 90), "a latitude")
    _need(x, "lon", _num_range(-180, 180), "a longitude")
    _need(x, "alt", _is_num, "a number", nullable=True, optional=True)
    _need(x, "hdop", lambda v: _is_num(v) and v >= 0, "a number >= 0", nullable=True, optional=True)
    _need(x, "nsat", _int_range(0), "an integer >= 0", nullable=True, optional=True)
    _need(x, "n", _int_range(0), "an integer >= 0", nullable=True, optional=True)
    return True


def _register(obj, warnings):
    _record(obj)
    _need(obj, "why", lambda x: isinstance(x, str) and 0 < len(x) <= 20, "a reason word")
    if obj["why"] not in REGISTER_WHY:
        # only informative: keep the record (it carries the position) and report the word
        warnings.append("register.why: undocumented %r" % obj["why"][:20])
    _need(obj, "meters", lambda x: isinstance(x, list) and all(_is_meter(m) for m in x),
          "a list of 12-digit addresses")
    _need(obj, "pos", _pos, "a position object", nullable=True)
    _need(obj, "imei", _is_str, "a string")
    _need(obj, "iccid", _is_str, "a string", nullable=True, optional=True)
    _need(obj, "fw", _is_str, "a string")
    _need(obj, "csq", _int_range(0, 99), "an integer 0..31", nullable=True)


def _is_meter(x):
    return isinstance(x, str) and bool(_METER.match(x))


def _kwh(x):
    if not isinstance(x, dict):
        return False
    for k, v in x.items():
        if k in KWH_KEYS and not _is_num(v):
            raise ContractError("kwh.%s: not a number" % k)
    return True


def _inst(x):
    if not isinstance(x, dict):
        return False
    for k in INST_PHASED:
        _need(x, k, lambda v: isinstance(v, list) and 1 <= len(v) <= 3 and all(_is_num(e) for e in v),
              "1..3 numbers", optional=True)
    for k in INST_SCALAR:
        _need(x, k, _is_num, "a number", optional=True)
    return True


def _energy(obj, warnings):
    _record(obj)
    _need(obj, "meter", _is_meter, "a 12-digit address")
    _need(obj, "kwh", _kwh, "an object of registers")
    _need(obj, "inst", _inst, "an object of instantaneous values", optional=True)


def _err(x):
    if not isinstance(x, dict):
        return False
    for k, v in x.items():
        if isinstance(v, dict):
            # groups such as `ladder` are counters, plus the odd note (a rung name or null)
            if not all(_is_int(e) or e is None or isinstance(e, str) for e in v.values()):
                raise ContractError("err.%s: not counters" % k)
        elif not _is_int(v):
            raise ContractError("err.%s: not a counter" % k)
    return True


def _heartbeat(obj, warnings):
    _clock(obj)
    _need(obj, "up", _int_range(0), "an integer >= 0")
    _need(obj, "csq", _int_range(0, 99), "an integer 0..31", nullable=True, optional=True)
    _need(obj, "fix", lambda x: isinstance(x, bool), "true/false", optional=True)
    _need(obj, "nsat", _int_range(0), "an integer >= 0", nullable=True, optional=True)
    _need(obj, "outbox", _int_range(0), "an integer >= 0", optional=True)
    _need(obj, "heap", _int_range(0), "an integer >= 0", nullable=True, optional=True)
    _need(obj, "heap_peak", _int_range(0), "an integer >= 0", nullable=True, optional=True)
    _need(obj, "reset", _is_str, "a string", optional=True)
    _need(obj, "err", _err, "an object of counters", optional=True)


def _event(obj, warnings):
    _record(obj)
    _need(obj, "kind", lambda x: isinstance(x, str) and 0 < len(x) <= 40, "a name")
    _need(obj, "data", lambda x: isinstance(x, dict), "an object")
    data, kind = obj["data"], obj["kind"]
    if kind == "relocation":
        _need(data, "from", lambda x: x is None or _pos(x), "a position", nullable=True)
        _need(data, "to", _pos, "a position")
    elif kind in ("meter_offline", "meter_online"):
        _need(data, "meter", _is_meter, "a 12-digit address")
    elif kind == "outbox_overflow":
        _need(data, "dropped", _int_range(0), "an integer >= 0")


def _kwh_list(x):
    return isinstance(x, list) and 1 <= len(x) <= 16 and all(_is_num(e) and 0 <= e < 1e6 for e in x)


def _stamp(x):
    return isinstance(x, str) and bool(_STAMP.match(x))


def _frozen(obj, warnings):
    _record(obj)
    _need(obj, "meter", _is_meter, "a 12-digit address")
    _need(obj, "date", lambda x: isinstance(x, str) and bool(_DATE.match(x)), "a date YYYY-MM-DD")
    _need(obj, "at", _stamp, "a time stamp YYYY-MM-DDThh:mm")
    _need(obj, "fwd", _kwh_list, "a list of kWh (total, tariffs)")
    _need(obj, "rev", _kwh_list, "a list of kWh (total, tariffs)", optional=True)


def _meter_event(obj, warnings):
    _record(obj)
    _need(obj, "meter", _is_meter, "a 12-digit address")
    _need(obj, "kind", lambda x: isinstance(x, str) and 0 < len(x) <= 40, "a name")
    _need(obj, "n", _int_range(0, 999999), "an integer 0..999999")
    for key in ("start", "end", "at", "before", "after"):
        _need(obj, key, _stamp, "a time stamp", nullable=True, optional=True)
    for key in ("kwh_before", "kwh_after"):
        _need(obj, key, _kwh_list, "a list of kWh", optional=True)
    if obj["kind"] == "baseline":
        _need(obj, "counts", lambda x: isinstance(x, dict) and all(v is None or _is_int(v) for v in x.values()),
              "an object of counts")


def _resp(obj, warnings):
    _need(obj, "id", lambda x: isinstance(x, str) and 0 < len(x) <= 40, "a request id", nullable=True)
    _need(obj, "ok", lambda x: isinstance(x, bool), "true/false")
    _clock(obj)
    if obj["ok"]:
        _need(obj, "result", lambda x: isinstance(x, dict), "an object")
    else:
        _need(obj, "error", _is_str, "a string")


_CHECKS = {
    "status": _status,
    "register": _register,
    "energy": _energy,
    "heartbeat": _heartbeat,
    "event": _event,
    "resp": _resp,
    "frozen": _frozen,
    "settle": _frozen,  # a settlement: the same fields as a daily freeze
    "meter_event": _meter_event,
}
