"""Argument types of the head-end's command line: each checks one value up front and says what is wrong.

argparse puts the argument's name in front of the message and exits with status 2, so a bad value is
refused before anything is connected, computed or written. Every type raises ArgumentTypeError with its
own text: argparse would otherwise echo the raw value, and a command key must never be echoed.
"""

import argparse
import json
import math
import os
from pathlib import Path

from tools.headend import contract, report

GRID_MIN_DEG, GRID_MAX_DEG = 0.0001, 45.0
SIZE_MIN, SIZE_MAX = (400, 300), (8000, 8000)
STATES = ("online", "silent", "offline", "unknown")
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _bad(text):
    return argparse.ArgumentTypeError(text)


def _show(text, n=40):
    text = str(text)
    return repr(text if len(text) <= n else text[:n] + "...")


def _number(text, what):
    try:
        x = float(text)
    except ValueError:
        raise _bad("%s is not a number (%s)" % (_show(text), what))
    if not math.isfinite(x):
        raise _bad("%s is not a finite number (%s)" % (_show(text), what))
    return x


def number_in(lo, hi, what):
    """A float type accepting lo <= x <= hi."""
    def check(text):
        x = _number(text, what)
        if not lo <= x <= hi:
            raise _bad("%s is out of range: %s, from %g to %g" % (_show(text), what, lo, hi))
        return x
    check.__name__ = "number"
    return check


def positive_seconds(hi, what="seconds"):
    """A float type accepting 0 < x <= hi."""
    def check(text):
        x = _number(text, what)
        if not 0 < x <= hi:
            raise _bad("%s is out of range: %s, more than 0 and at most %g" % (_show(text), what, hi))
        return x
    check.__name__ = "seconds"
    return check


grid_deg = number_in(GRID_MIN_DEG, GRID_MAX_DEG, "the grid cell size in degrees")


def size(text):
    """WxH in pixels within SIZE_MIN..SIZE_MAX."""
    w, sep, h = text.strip().lower().partition("x")
    try:
        w, h = int(w), int(h)
    except ValueError:
        sep = ""
    if not sep:
        raise _bad("%s is not WxH in pixels (e.g. 1000x800)" % _show(text))
    if not (SIZE_MIN[0] <= w <= SIZE_MAX[0] and SIZE_MIN[1] <= h <= SIZE_MAX[1]):
        raise _bad("%dx%d is out of range: the map needs at least %dx%d and at most %dx%d pixels"
                   % ((w, h) + SIZE_MIN + SIZE_MAX))
    return w, h


def when(text):
    """An ISO 8601 date or date-time (UTC unless it names a zone) as Unix seconds."""
    try:
        return report.parse_time(text)
    except (ValueError, OverflowError) as e:
        raise _bad("%s is not an ISO 8601 date or date-time such as 2026-11-24 or 2026-11-24T08:00+08:00 (%s)"
                   % (_show(text), e))


def regions(text):
    """A GeoJSON file of Polygon/MultiPolygon features, loaded and checked (errors name the file)."""
    try:
        return report.load_geojson(text)
    except OSError as e:
        raise _bad("cannot read %s: %s" % (text, e.strerror or e))
    except ValueError as e:
        raise _bad(str(e))


def ident(what):
    """A terminal id, topic prefix or group: A-Z a-z 0-9 - _ . only."""
    def check(text):
        if not contract.valid_id(text):
            raise _bad("%s is not a valid %s (letters, digits, '-', '_' and '.' only)" % (_show(text), what))
        return text
    check.__name__ = what
    return check


terminal = ident("terminal id")


def broker(text):
    """host:port (or host) of the MQTT broker."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = text.strip(), "1883"
    if not host or any(c in host for c in " /"):
        raise _bad("%s is not host:port" % _show(text))
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _bad("%s: the port must be a number from 1 to 65535" % _show(text))
    return "%s:%s" % (host, int(port))


def key_hex(text):
    """A command key: hex, at least 16 bytes. The value is secret and never repeated in a message."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise _bad("not hex (the key is not shown)")
    if len(key) < 16:
        raise _bad("shorter than 16 bytes (the key is not shown)")
    return text.strip().lower()


def day(text):
    """A calendar date YYYY-MM-DD (a meter-local day)."""
    from datetime import date

    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise _bad("not a date YYYY-MM-DD: %r" % _show(text))


def _dsn(text):
    """A PostgreSQL DSN (postgresql://user@host:port/db): taken as it is; the connection checks it."""
    return text.startswith(("postgresql://", "postgres://"))


def existing_db(text):
    """The path of an existing head-end database (SQLite), or a PostgreSQL DSN."""
    if _dsn(text):
        return text
    p = Path(text)
    if not p.exists():
        raise _bad("no database at %s (start `run` first, or give the right path)" % text)
    if not p.is_file():
        raise _bad("%s is not a file" % text)
    try:
        with open(p, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise _bad("cannot read %s: %s" % (text, e.strerror or e))
    if head and head != _SQLITE_MAGIC:
        raise _bad("%s is not an SQLite database" % text)
    return str(p)


def new_db(text):
    """A database path that `run` may create (its folder must exist), or a PostgreSQL DSN."""
    if _dsn(text):
        return text
    p = Path(text)
    if p.exists():
        return existing_db(text)
    if not p.parent.is_dir():
        raise _bad("folder %s does not exist" % (str(p.parent) or "."))
    return str(p)


def out_base(text):
    """An output path without extension whose folder exists or can be created."""
    p = Path(text)
    if not p.name or p.name in (".", ".."):
        raise _bad("%s does not end in a file name" % _show(text))
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise _bad("%s is a file, not a folder" % anc)
    if not os.access(anc, os.W_OK):
        raise _bad("folder %s is not writable" % anc)
    return str(p)


def keys_file(text):
    """A file of command keys: JSON {tid: hex} or lines 'tid hex'; loaded and checked."""
    try:
        content = Path(text).read_text()
    except OSError as e:
        raise _bad("cannot read %s: %s" % (text, e.strerror or e))
    try:
        obj = json.loads(content)
    except ValueError:
        obj = None
    keys = {}
    if isinstance(obj, dict):
        keys = {str(k): str(v) for k, v in obj.items()}
    else:
        for n, line in enumerate(content.splitlines(), 1):
            parts = line.split()
            if not parts or line.lstrip().startswith("#"):
                continue
            if len(parts) != 2:
                raise _bad("%s line %d: not 'terminal-id hex-key'" % (text, n))
            keys[parts[0]] = parts[1]
    for tid, key in keys.items():
        try:
            key_hex(key)
        except argparse.ArgumentTypeError as e:
            raise _bad("%s: the key of %s is %s" % (text, _show(tid), e))
    return keys


def zone(text):
    """An IANA time zone name (e.g. Asia/Shanghai) or UTC."""
    from datetime import timezone
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if text.strip().upper() in ("UTC", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _bad("unknown time zone %s (an IANA name such as Asia/Shanghai, or UTC)" % _show(text))


def tile_url(text):
    """A basemap tile URL template: http(s) with {z}, {x} and {y}."""
    t = text.strip()
    if not t.startswith(("http://", "https://")) or not all(p in t for p in ("{z}", "{x}", "{y}")):
        raise _bad("%s is not an http(s) tile URL with {z}, {x} and {y}" % _show(t, 80))
    return t


def bundle(text):
    """A signed update bundle directory made by `python -m tools.release pack`, loaded and checked."""
    from tools.release import Bundle, ReleaseError

    try:
        return Bundle(text)
    except ReleaseError as e:
        raise _bad(str(e))


def mqtt_user(text):
    """A broker username: printable ASCII, no spaces or ':' (mosquitto's password file separator)."""
    if not text or len(text) > 64 or any(not 33 <= ord(c) <= 126 or c == ":" for c in text):
        raise _bad("%s is not a broker username (1 to 64 printable characters, no spaces or ':')" % _show(text))
    return text


def password_file(text):
    """A file whose first line is a password: read now, kept as a Secret (its value is never shown)."""
    from tools.headend.mqttconn import Secret

    try:
        with open(text, "rb") as f:
            raw = f.read(4096)
    except OSError as e:
        raise _bad("cannot read %s: %s" % (text, e.strerror or e))
    line = raw.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        password = line.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("%s: the password is not UTF-8 text (the password is not shown)" % text)
    if not password:
        raise _bad("%s is empty: the password goes on its first line" % text)
    return Secret(password)


def pem_file(what):
    """A readable PEM file holding a `what` ("certificate" or "private key")."""
    marker = b"PRIVATE KEY-----" if what == "private key" else b"-----BEGIN CERTIFICATE-----"

    def check(text):
        try:
            with open(text, "rb") as f:
                data = f.read(1 << 20)
        except OSError as e:
            raise _bad("cannot read %s: %s" % (text, e.strerror or e))
        if marker not in data:
            raise _bad("%s is not a PEM %s" % (text, what))
        return text
    check.__name__ = what.replace(" ", "_")
    return check
