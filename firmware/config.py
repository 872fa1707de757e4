"""Configuration: defaults in code, a JSON file on flash overrides them, validated on load.

A bad file never stops the terminal: the error is reported and the last good
copy (kept beside it) or the defaults are used. Saving is atomic: write a temp
file, close it, rename it over the old one (atomic on littlefs and POSIX).
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
    "state_dir": "data",
    "wdt_ms": 30000,
    "log_level": "info",
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


def _pos(v):
    return 0 < v < float("inf")  # also refuses NaN; inf would be saved as a value JSON cannot read back


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


def _endpoint(v):
    host, sep, port = v.rpartition(":")
    return bool(sep and host and _digits(port) and 0 < int(port) < 65536)


def _hexkey(v):
    if not v:
        return True
    if len(v) % 2 or len(v) < 32:
        return False
    for ch in v:
        if ch not in "0123456789abcdefABCDEF":
            return False
    return True


def _meters(v):
    for a in v:
        if not isinstance(a, str) or len(a) != 12 or not _digits(a):
            return False
    return True


def _inst(v):
    for x in v:
        if x not in ("v", "i", "p", "pf", "f"):
            return False
    return True


_RULES = {
    "board": (str, lambda v: v in BOARDS, "one of the boards in firmware/boards.py"),
    "meter_uart": (str, _endpoint, "host:port"),
    "modem_uart": (str, _endpoint, "host:port"),
    "modem_ctl": (str, lambda v: not v or _endpoint(v), "host:port, or empty"),
    "terminal_id": (str, _ident, "letters, digits, - _ . only (no + # /)"),
    "topic_prefix": (str, lambda v: bool(v) and _ident(v), "letters, digits, - _ . only (no + # /)"),
    "broker_host": (str, lambda v: bool(v), "a host name"),
    "broker_port": (_INT, lambda v: 0 < v < 65536, "1..65535"),
    "broker_user": (str, None, ""),
    "broker_pass": (str, None, ""),
    "keepalive_s": (_INT, lambda v: 10 <= v <= 3600, "10..3600"),
    "apn": (str, None, ""),
    "apn_user": (str, None, ""),
    "apn_pass": (str, None, ""),
    "gnssconfig": (_INT, lambda v: 0 <= v <= 15, "0..15"),
    "meters": (list, _meters, "12-digit addresses"),
    "meter_baud": (_INT, lambda v: v in (1200, 2400, 4800, 9600), "1200, 2400, 4800 or 9600"),
    "meter_timeout_ms": (_INT, lambda v: 100 <= v <= 10000, "100..10000"),
    "poll_s": (_INT, lambda v: 1 <= v <= 86400, "1..86400"),
    "heartbeat_s": (_INT, lambda v: 1 <= v <= 86400, "1..86400"),
    "gnss_s": (_INT, lambda v: 1 <= v <= 86400, "1..86400"),
    "relocation_m": (_NUM, _pos, "> 0"),
    "hdop_max": (_NUM, _pos, "> 0"),
    "min_sats": (_INT, lambda v: 1 <= v <= 64, "1..64"),
    "inst": (list, _inst, "any of v, i, p, pf, f"),
    "time_sync_meters": (bool, None, ""),
    "meter_utc_offset_s": (_INT, lambda v: -50400 <= v <= 50400, "-50400..50400 (seconds east of UTC)"),
    "cmd_key": (str, _hexkey, "hex, at least 16 bytes"),
    "cmd_max_skew_s": (_INT, lambda v: 10 <= v <= 86400, "10..86400"),
    "link_backoff_s": (_INT, lambda v: 1 <= v <= 600, "1..600"),
    "link_backoff_max_s": (_INT, lambda v: 1 <= v <= 86400, "1..86400"),
    "server_backoff_max_s": (_INT, lambda v: 1 <= v <= 86400, "1..86400"),
    "outbox_max": (_INT, lambda v: 10 <= v <= 100000, "10..100000"),
    "state_dir": (str, lambda v: bool(v), "a directory"),
    "wdt_ms": (_INT, lambda v: 1000 <= v <= 600000, "1000..600000"),
    "log_level": (str, lambda v: v in ("debug", "info", "warning", "error"), "debug, info, warning or error"),
    "frozen_days_max": (_INT, lambda v: 1 <= v <= 62, "1..62"),
    "frozen_margin_s": (_INT, lambda v: 0 <= v <= 7200, "0..7200"),
    "frozen_window_s": (_INT, lambda v: 0 <= v <= 43200, "0..43200"),
    "frozen_pace_ms": (_INT, lambda v: 0 <= v <= 10000, "0..10000"),
    "meter_events_s": (_INT, lambda v: v == 0 or 60 <= v <= 86400, "0 (off) or 60..86400"),
    "meter_clock_check": (bool, None, ""),
    "meter_clock_sync": (bool, None, ""),
    "meter_clock_threshold_s": (_INT, lambda v: 1 <= v <= 3600, "1..3600"),
    "meter_clock_window_s": (_INT, lambda v: 1 <= v <= 3600, "1..3600"),
    "meter_clock_guard_s": (_INT, lambda v: 0 <= v <= 3600, "0..3600"),
    "meter_max_kw": (_NUM, _pos, "> 0"),
}

# What a server may change with config.set; everything else is forbidden_key.
SETTABLE = ("poll_s", "heartbeat_s", "gnss_s", "relocation_m", "hdop_max", "min_sats", "inst",
            "time_sync_meters", "cmd_max_skew_s")
SECRETS = ("cmd_key", "broker_pass", "apn_pass")


class ConfigError(ValueError):
    pass


def defaults():
    d = {}
    for k, v in _DEFAULTS.items():
        d[k] = list(v) if isinstance(v, list) else v
    return d


def check(key, value):
    """Validate one key; return the value (ints widened to float where numbers are allowed) or raise ConfigError."""
    rule = _RULES.get(key)
    if rule is None:
        raise ConfigError("unknown key %r" % (key,))
    types, ok, what = rule
    if not isinstance(types, tuple):
        types = (types,)
    # bool is an int in Python: refuse it where a number is expected
    if isinstance(value, bool) and bool not in types:
        raise ConfigError("%s: expected %s, got a boolean" % (key, what or types[0].__name__))
    if not isinstance(value, types):
        raise ConfigError("%s: expected %s, got %r" % (key, what or types[0].__name__, value))
    if ok is not None and not ok(value):
        raise ConfigError("%s: expected %s, got %r" % (key, what, value))
    return value


def validate(overrides):
    """Defaults updated with `overrides` (a dict), every key checked; raises ConfigError."""
    if not isinstance(overrides, dict):
        raise ConfigError("config must be a JSON object")
    cfg = defaults()
    for k, v in overrides.items():
        cfg[k] = check(k, v)
    return cfg


def redacted(cfg, keys=None):
    """A copy of cfg without secrets, restricted to `keys` if given."""
    out = {}
    for k in keys or sorted(cfg):
        if k in cfg and k not in SECRETS:
            out[k] = cfg[k]
    return out


def _read(path):
    with open(path) as f:
        return json.load(f)


def load(path, log=None):
    """The validated config from `path`; on any problem, the last good copy or the defaults. Returns (cfg, source)."""
    for candidate, source in ((path, "file"), (path + ".good", "last good")):
        try:
            cfg = validate(_read(candidate))
        except OSError:
            if log and candidate == path:
                log.warning("no config at %s", path)
            continue
        except (ValueError, ConfigError, RuntimeError, MemoryError) as e:  # bad syntax, too deep, too big
            if log:
                log.error("config %s refused: %s", candidate, e)
            continue
        if source == "file":
            try:
                save(path + ".good", _read(path))
            except OSError as e:
                if log:
                    log.warning("cannot keep last good config: %s", e)
        elif log:
            log.warning("using the last good config %s", candidate)
        return cfg, source
    if log:
        log.warning("using the built-in defaults")
    return defaults(), "defaults"


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
