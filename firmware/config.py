"""Configuration: defaults in code, a JSON file on flash overrides them, every key checked on load.

A problem in the file never stops the terminal and never costs it the rest of
the file: an unknown key is ignored, a bad value of a known key falls back for
that key alone (the last good copy's value, else the default), and every
problem is listed. Only a file that is not a JSON object at all is replaced
whole (by the last good copy, else the defaults). Secrets never appear in a
message. Saving is atomic: write a temp file, close it, rename it over the old
one (atomic on littlefs and POSIX).
"""

import json
import os

from firmware.boards import BOARDS

_DEFAULTS = {
    "board": "unix",
    "meter_uart": "127.0.0.1:7001",  # unix board only: host:port of the meter bus simulator
    "modem_uart": "127.0.0.1:7002",  # unix board only: host:port of the modem simulator
    "modem_ctl": "",  # unix board only: host:port of the modem simulator's control port (its reset input)
    "terminal_id": "",  # empty: the modem's IMEI
    "topic_prefix": "bdmeter",
    "broker_host": "127.0.0.1",
    "broker_port": 1883,
    "broker_user": "",
    "broker_pass": "",
    "broker_tls": False,  # TLS in the modem to the broker; plain TCP (the default) suits a private APN
    "tls_ca": "ca.pem",  # CA certificate (PEM) on the terminal's flash, uploaded to the module when needed
    "tls_cert": "",  # client certificate (PEM) on flash; with tls_key: mutual TLS; empty: server-only
    "tls_key": "",
    "tls_sni": True,  # send broker_host as the server name
    "tls_verify": True,  # verify the broker's certificate (CA, host, dates on the module's clock)
    "keepalive_s": 600,  # heartbeats every 5 min keep the link busy; pings only fill real silences
    "apn": "",
    "apn_user": "",
    "apn_pass": "",
    "gnssconfig": 1,  # EC800M: 1 = GPS + BeiDou, 7 = BeiDou only
    "meters": [],  # empty: discover the single meter on the bus
    "meter_baud": 2400,
    "meter_timeout_ms": 1000,
    "poll_s": 900,
    "heartbeat_s": 300,
    "gnss_s": 60,
    "relocation_m": 200,
    "hdop_max": 5.0,
    "min_sats": 4,
    "inst": [],  # instantaneous values to report: any of "v", "i", "p", "pf", "f"
    "time_sync_meters": False,
    "meter_utc_offset_s": 28800,  # meters keep local time: China Standard Time is UTC+8
    "cmd_key": "",  # hex, >= 16 bytes; empty: every command is refused
    "cmd_max_skew_s": 300,
    "link_backoff_s": 1,  # first wait of the modem's recovery ladder; doubles per failed attempt
    "link_backoff_max_s": 600,
    "server_backoff_max_s": 900,  # cap of the retry back-off while only the server is unreachable
    "outbox_max": 1000,
    "outbox_reserve_kb": 32,  # flash the outbox leaves free for everything else (boot notes, config saves)
    "state_dir": "data",
    "wdt_ms": 30000,
    "update_pubkey": "",  # hex Ed25519 public key of the release host; empty: every update is refused
    "update_confirm_s": 600,  # a new version must be online with every task alive within this, or it rolls back
    "log_level": "info",
    "config_fallback_s": 21600,  # no server contact this long: back to the config that last reached it; 0: never
    # the meters' own records: daily freezes, event logs, clock discipline, plausibility
    "frozen_days_max": 62,  # catch-up depth in days (a meter keeps 62)
    "frozen_margin_s": 300,  # read the day's freeze this long after 00:00 meter time
    "frozen_window_s": 3600,  # ... plus an offset within this window, the same each day for a terminal
    "frozen_pace_ms": 300,  # pause between frozen-value reads, so live polling keeps its timing
    "meter_events_s": 3600,  # event counters read this often (0: never)
    "meter_clock_check": True,  # compare meter clocks daily with GNSS / network time
    "meter_clock_sync": True,  # and correct them by broadcast within the window
    "meter_clock_threshold_s": 30,
    "meter_clock_window_s": 300,  # meters take a broadcast sync only within this (5 min)
    "meter_clock_guard_s": 300,  # no sync this close to 00:00 meter time
    "meter_max_kw": 60,  # a register growing faster than this is an anomaly
}

# key -> (type or tuple of types, check or None, human description of the check)
_INT = (int,)
_NUM = (int, float)
_STR_MAX = 64  # AT commands and MQTT fields: nothing here needs more


def _digits(v):
    """Only ASCII 0-9 (str.isdigit also takes other scripts' digits)."""
    if not v:
        return False
    for ch in v:
        if not "0" <= ch <= "9":
            return False
    return True


def _ident(v):
    if not v:
        return True
    for ch in v:
        if not ("a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9" or ch in "-_."):
            return False
    return len(v) <= 64


def _printable(v, limit=_STR_MAX):
    """Printable ASCII without a double quote (it would end the quoted field of an AT command)."""
    if len(v) > limit:
        return False
    for ch in v:
        if not " " <= ch <= "~" or ch == '"':
            return False
    return True


def _host(v):
    return 0 < len(v) <= 253 and _printable(v, 253) and " " not in v


def _endpoint(v):
    host, sep, port = v.rpartition(":")
    return bool(sep and host and _digits(port) and len(port) <= 5 and 0 < int(port) < 65536)


def _hexkey(v):
    if not v:
        return True
    if len(v) % 2 or not 32 <= len(v) <= 128:
        return False
    for ch in v:
        if ch not in "0123456789abcdefABCDEF":
            return False
    return True


def _meters(v):
    if len(v) > 32:  # one RS-485 segment carries at most 32 unit loads
        return False
    for i, a in enumerate(v):
        if not isinstance(a, str) or len(a) != 12 or not _digits(a) or a in v[:i]:
            return False
    return True


def _inst(v):
    for i, x in enumerate(v):
        if x not in ("v", "i", "p", "pf", "f") or x in v[:i]:
            return False
    return True


def _between(lo, hi):
    return lambda v: lo <= v <= hi  # also refuses NaN, and inf, which would be saved as a value JSON cannot read


_RULES = {
    "board": (str, lambda v: v in BOARDS, "one of the boards in firmware/boards.py"),
    "meter_uart": (str, _endpoint, "host:port"),
    "modem_uart": (str, _endpoint, "host:port"),
    "modem_ctl": (str, lambda v: not v or _endpoint(v), "host:port, or empty"),
    "terminal_id": (str, _ident, "letters, digits, - _ . only (no + # /), at most 64"),
    "topic_prefix": (str, lambda v: bool(v) and _ident(v), "letters, digits, - _ . only (no + # /), 1..64"),
    "broker_host": (str, _host, "a host name (1..253 printable characters, no spaces)"),
    "broker_port": (_INT, _between(1, 65535), "1..65535"),
    "broker_user": (str, _printable, "at most 64 printable ASCII characters, no \""),
    "broker_pass": (str, _printable, "at most 64 printable ASCII characters, no \""),
    "broker_tls": (bool, None, ""),
    "tls_ca": (str, lambda v: bool(v) and _printable(v, 255), "a file name on flash (1..255 printable characters)"),
    "tls_cert": (str, lambda v: _printable(v, 255), "a file name on flash (0..255 printable characters)"),
    "tls_key": (str, lambda v: _printable(v, 255), "a file name on flash (0..255 printable characters)"),
    "tls_sni": (bool, None, ""),
    "tls_verify": (bool, None, ""),
    "keepalive_s": (_INT, _between(10, 3600), "10..3600"),
    "apn": (str, _printable, "at most 64 printable ASCII characters, no \""),
    "apn_user": (str, _printable, "at most 64 printable ASCII characters, no \""),
    "apn_pass": (str, _printable, "at most 64 printable ASCII characters, no \""),
    "gnssconfig": (_INT, _between(0, 15), "0..15"),
    "meters": (list, _meters, "up to 32 different 12-digit addresses"),
    "meter_baud": (_INT, lambda v: v in (1200, 2400, 4800, 9600), "1200, 2400, 4800 or 9600"),
    "meter_timeout_ms": (_INT, _between(100, 10000), "100..10000"),
    "poll_s": (_INT, _between(1, 86400), "1..86400"),
    "heartbeat_s": (_INT, _between(1, 86400), "1..86400"),
    "gnss_s": (_INT, _between(1, 86400), "1..86400"),
    "relocation_m": (_NUM, _between(10, 100000), "10..100000"),
    "hdop_max": (_NUM, _between(0.5, 50), "0.5..50"),
    "min_sats": (_INT, _between(1, 64), "1..64"),
    "inst": (list, _inst, "each of v, i, p, pf, f at most once"),
    "time_sync_meters": (bool, None, ""),
    "meter_utc_offset_s": (_INT, _between(-50400, 50400), "-50400..50400 (seconds east of UTC)"),
    "cmd_key": (str, _hexkey, "hex, 16..64 bytes"),
    "cmd_max_skew_s": (_INT, _between(10, 86400), "10..86400"),
    "link_backoff_s": (_INT, _between(1, 600), "1..600"),
    "link_backoff_max_s": (_INT, _between(1, 86400), "1..86400"),
    "server_backoff_max_s": (_INT, _between(1, 86400), "1..86400"),
    "outbox_max": (_INT, _between(10, 100000), "10..100000"),
    "outbox_reserve_kb": (_INT, _between(8, 4096), "8..4096"),
    "state_dir": (str, lambda v: bool(v) and _printable(v, 255), "a directory (1..255 printable characters)"),
    "wdt_ms": (_INT, _between(1000, 600000), "1000..600000"),
    "update_pubkey": (str, lambda v: not v or (len(v) == 64 and _hexkey(v)), "64 hex digits (32 bytes) or empty"),
    "update_confirm_s": (_INT, _between(30, 86400), "30..86400"),
    "log_level": (str, lambda v: v in ("debug", "info", "warning", "error"), "debug, info, warning or error"),
    "config_fallback_s": (_INT, lambda v: v == 0 or 10 <= v <= 2592000, "0 (never) or 10..2592000"),
    "frozen_days_max": (_INT, _between(1, 62), "1..62"),
    "frozen_margin_s": (_INT, _between(0, 7200), "0..7200"),
    "frozen_window_s": (_INT, _between(0, 43200), "0..43200"),
    "frozen_pace_ms": (_INT, _between(0, 10000), "0..10000"),
    "meter_events_s": (_INT, lambda v: v == 0 or 60 <= v <= 86400, "0 (off) or 60..86400"),
    "meter_clock_check": (bool, None, ""),
    "meter_clock_sync": (bool, None, ""),
    "meter_clock_threshold_s": (_INT, _between(1, 3600), "1..3600"),
    "meter_clock_window_s": (_INT, _between(1, 3600), "1..3600"),
    "meter_clock_guard_s": (_INT, _between(0, 3600), "0..3600"),
    "meter_max_kw": (_NUM, _between(0.1, 1000000), "0.1..1000000"),
}

# What a server may change with config.set; everything else is forbidden_key.
SETTABLE = ("poll_s", "heartbeat_s", "gnss_s", "relocation_m", "hdop_max", "min_sats", "inst",
            "time_sync_meters", "cmd_max_skew_s")
SECRETS = ("cmd_key", "broker_pass", "apn_pass")
_SHOW_MAX = 40  # characters of a value or key quoted in a message


class ConfigError(ValueError):
    pass


def defaults():
    d = {}
    for k, v in _DEFAULTS.items():
        d[k] = list(v) if isinstance(v, list) else v
    return d


def _type_name(v):
    if isinstance(v, bool):
        return "a boolean"
    if v is None:
        return "null"
    for t, name in ((int, "an integer"), (float, "a number"), (str, "a string"), (list, "a list"),
                    (dict, "an object")):
        if isinstance(v, t):
            return name
    return "a value"


def _short(text):
    return text if len(text) <= _SHOW_MAX else text[:_SHOW_MAX - 3] + "..."


def shown(key, value):
    """How `value` of `key` may appear in a message: a secret never (only its kind and length), others shortened."""
    if key in SECRETS:
        if isinstance(value, str):
            return "%d characters (secret, not shown)" % len(value)
        return "%s (secret, not shown)" % _type_name(value)
    if isinstance(value, (list, dict)):
        try:
            text = json.dumps(value)
        except (TypeError, ValueError, RuntimeError):
            text = _type_name(value)
        return _short(text)
    return _short(repr(value))


def check(key, value):
    """Validate one key; return the value or raise ConfigError (whose message never shows a secret)."""
    rule = _RULES.get(key)
    if rule is None:
        raise ConfigError("unknown key %s" % _short(repr(key)))
    types, ok, what = rule
    if not isinstance(types, tuple):
        types = (types,)
    # bool is an int in Python: refuse it where a number is expected
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        got = shown(key, value) if key in SECRETS else "%s %s" % (_type_name(value), shown(key, value))
        raise ConfigError("%s: expected %s, got %s" % (key, what or types[0].__name__, got))
    if ok is not None and not ok(value):
        raise ConfigError("%s: expected %s, got %s" % (key, what, shown(key, value)))
    return value


def _distance(a, b):
    """Edit distance (insert, delete, substitute, swap of neighbours), for 'did you mean'."""
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if prev2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def _suggest(key):
    if not isinstance(key, str) or len(key) > _SHOW_MAX:
        return ""
    best, dist = None, 3
    low = key.strip().lower()
    for k in _RULES:
        d = 0 if low == k else _distance(low, k)
        if d < dist:
            best, dist = k, d
    return "; did you mean %s?" % best if best else ""


def resolve(overrides, fallback=None):
    """(cfg, problems): the defaults updated with every valid key of `overrides`.

    An unknown key is ignored; a known key with a bad value keeps `fallback`'s
    value (the last good copy) when that is valid, else the default. `problems`
    lists every one of them as (kind, key, message), kind "unknown" or "bad",
    in key order. Raises ConfigError only when `overrides` is not an object.
    """
    if not isinstance(overrides, dict):
        raise ConfigError("expected a JSON object, got %s" % _type_name(overrides))
    cfg = defaults()
    problems = []
    for k in sorted(overrides):
        if k not in _RULES:
            problems.append(("unknown", k, "unknown key %s ignored%s" % (_short(repr(k)), _suggest(k))))
            continue
        try:
            cfg[k] = check(k, overrides[k])
        except ConfigError as e:
            used = "the default"
            if isinstance(fallback, dict) and k in fallback:
                try:
                    cfg[k] = check(k, fallback[k])
                    used = "the last good value"
                except ConfigError:
                    pass
            problems.append(("bad", k, "%s; using %s" % (e, used)))
    return cfg, problems


def validate(overrides):
    """Defaults updated with `overrides` (a dict), every key checked; raises ConfigError listing every problem."""
    cfg, problems = resolve(overrides)
    if problems:
        raise ConfigError("; ".join(p[2] for p in problems))
    return cfg


def redacted(cfg, keys=None):
    """A copy of cfg without secrets, restricted to `keys` if given."""
    out = {}
    for k in keys or sorted(cfg):
        if k in cfg and k not in SECRETS:
            out[k] = cfg[k]
    return out


def read(path):
    """The parsed JSON of `path`; OSError when missing, ValueError (or RuntimeError when too deep) when not JSON."""
    with open(path) as f:
        return json.load(f)


def _read_object(path):
    try:
        doc = read(path)
    except (OSError, ValueError, RuntimeError, MemoryError):
        return None
    return doc if isinstance(doc, dict) else None


def load(path, log=None):
    """(cfg, source, problems) from the file at `path`, key by key; source "file", "last good" or "defaults".

    The last good copy (`path` + ".good") is the config last loaded, with
    only valid values; it stands in, key by key, for bad values, and whole
    for a file that is missing or not a JSON object. `problems` lists
    (kind, key, message); kind "file" when the file was not used at all.
    """
    last = _read_object(path + ".good")
    if last is not None:
        last = overrides_of(resolve(last)[0])  # written by us, but perhaps by a firmware with other rules
    problems = []
    try:
        doc = read(path)
        if not isinstance(doc, dict):
            raise ConfigError("expected a JSON object, got %s" % _type_name(doc))
    except OSError:
        doc = None
        if log:
            log.warning("no config at %s", path)
    except (ValueError, RuntimeError, MemoryError) as e:  # bad syntax, too deep, too big, not an object
        doc = None
        problems.append(("file", "", "%s: not a JSON object (%s)" % (path, _short(str(e) or type(e).__name__))))
    if doc is None:
        cfg, source = (resolve(last)[0], "last good") if last is not None else (defaults(), "defaults")
    else:
        cfg, more = resolve(doc, last)
        problems += more
        source = "file"
        good = overrides_of(cfg)
        if good != last:
            try:
                save(path + ".good", good)
            except OSError as e:
                if log:
                    log.warning("cannot keep last good config: %s", e)
    if log:
        for kind, _, msg in problems:
            (log.warning if kind == "unknown" else log.error)("config: %s", msg)
        if source != "file":
            log.warning("config: using the %s", "last good copy " + path + ".good" if last is not None
                        else "built-in defaults")
    return cfg, source, problems


def problem_keys(problems):
    """The config_problems event's data: {"unknown": [...], "bad": [...]} key names (shortened, at most 16 each)."""
    out = {"unknown": [], "bad": []}
    for kind, key, msg in problems:
        if kind == "file":
            out["file"] = _short(msg)
        elif len(out[kind]) < 16:
            out[kind].append(_short(key))
    return out


def save(path, data):
    """Write `data` as JSON to `path` atomically (temp file, then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, path)


def overrides_of(cfg):
    """The keys of cfg that differ from the defaults: what a config file needs to hold."""
    d = defaults()
    out = {}
    for k, v in cfg.items():
        if d.get(k) != v:
            out[k] = v
    return out
