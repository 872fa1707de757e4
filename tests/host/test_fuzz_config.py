"""Fuzzing configuration: `validate` and `resolve` on random documents, `load` on random, truncated and corrupt files.

Pass for `validate`: a dict (every key known, every value accepted by `check`
and writable as strict JSON) or `ConfigError`. Pass for `resolve`: a config
that validates, in which every key of the document was either taken over or
listed as a problem, and no problem message shows a secret. Pass for `load`:
it never raises and returns a config in which every key validates: from the
file key by key when the file is a JSON object (a bad value replaced by the
last good copy's, else the default), else the last good copy when that is an
object, else the defaults.
"""

import json
import locale
import math
import os
import shutil
import tempfile


from firmware import config
from fuzzkit import Campaign, count, deep_text, mutate, random_bytes, random_json, random_scalar, reproduces

_DEFAULTS = config.defaults()
_KEYS = tuple(_DEFAULTS)
_ENCODING = locale.getpreferredencoding(False)  # what open() in text mode, as load() uses it, decodes with


def _good(rng, key):
    """A value the rules accept for `key`."""
    d = _DEFAULTS[key]
    if key == "board":
        return rng.choice(("unix", "esp32s3-ec800m", "rp2040-ec200u"))
    if key in ("meter_uart", "modem_uart"):
        return rng.choice(("127.0.0.1", "localhost", "h", "[::1]")) + ":%d" % rng.randint(1, 65535)
    if key in ("terminal_id", "topic_prefix"):
        return rng.choice(("bdmeter", "861234567890123", "a-b_c.d", "x" * 64, "" if key == "terminal_id" else "t"))
    if key == "cmd_key":
        return rng.choice(("", "%064x" % rng.getrandbits(256), "AB" * 16))
    if key == "config_fallback_s":
        return rng.choice((0, 10, 21600, 2592000))
    if key == "meters":
        return ["%012d" % rng.randrange(10 ** 12) for _ in range(rng.randint(0, 3))]
    if key == "inst":
        return rng.sample(["v", "i", "p", "pf", "f"], rng.randint(0, 5))
    if key == "meter_baud":
        return rng.choice((1200, 2400, 4800, 9600))
    if key == "log_level":
        return rng.choice(("debug", "info", "warning", "error"))
    if isinstance(d, bool):
        return rng.random() < 0.5
    if isinstance(d, float) or key == "relocation_m":
        return rng.choice((rng.uniform(0.01, 1e4), rng.randint(1, 10 ** 4)))
    if isinstance(d, int):
        return d + rng.choice((0, 0, 1, -1)) if d > 10 else d
    return d if d else rng.choice(("x", "a b", "cmnet", "~" * 64))


def _bad(rng, key):
    """A value of a wrong type or outside the rule, or anything at all."""
    k = rng.randrange(5)
    if k == 0:
        return random_json(rng, 2)
    if k == 1:
        return random_scalar(rng)
    if k == 2 and key in ("meter_uart", "modem_uart"):
        return rng.choice(("h:0", "h:65536", ":1", "h:", "h", "h:\u00b2", "h:\u0663", "h:\uff11", "h:-1", "h: 1",
                           "h:1.0", "h:" + "9" * 30))
    if k == 2 and key == "meters":
        return [rng.choice(("%012d" % 1, "1" * 11, "1" * 13, "\uff11" * 12, "\u0663" * 12, 123456789012, None))]
    if k == 3:
        return rng.choice((True, False, None, [], {}, "", 0, -1, 0.0, 1e999, -1e999, float("nan"), 2 ** 64,
                           "1", [1], {"a": 1}))
    return json.loads(deep_text(rng, rng.choice((3, 50, 400))))


def _document(rng):
    """A random config document: mostly an object with real keys, some good values, some bad, some unknown keys."""
    k = rng.randrange(20)
    if k == 0:
        return random_json(rng, 3)
    if k == 1:
        return rng.choice(([], "config", 1, None, [{"poll_s": 60}], True))
    doc = {}
    for key in rng.sample(_KEYS, rng.randint(0, 6)):
        doc[key] = _good(rng, key) if rng.randrange(4) else _bad(rng, key)
    if rng.randrange(6) == 0:
        doc[rng.choice(("nope", "", "POLL_S", "poll_s ", "\u00e9", "board\x00"))] = random_scalar(rng)
    return doc


def _contract(cfg):
    """None when a returned config has every key and every value validates and is strict JSON, else why not."""
    if not isinstance(cfg, dict) or set(cfg) != set(_KEYS):
        return "keys differ from the defaults'"
    for k, v in cfg.items():
        if v == _DEFAULTS[k] and type(v) is type(_DEFAULTS[k]):
            continue  # the defaults are checked once, in test_defaults_pass_every_check
        try:
            if config.check(k, v) != v:
                return "%s changed by check" % k
        except config.ConfigError as e:
            return "invalid %s: %s" % (k, e)
    try:
        json.dumps(cfg, allow_nan=False)
    except ValueError as e:
        return "not strict JSON: %s" % e
    return None


def test_defaults_pass_every_check():
    for k, v in _DEFAULTS.items():
        assert config.check(k, v) == v
    json.dumps(_DEFAULTS, allow_nan=False)


def _non_finite(cfg):
    return any(isinstance(v, float) and not math.isfinite(v) for v in cfg.values())


def _ascii_digits(cfg):
    """Ports and meter addresses are ASCII digits (MicroPython's str.isdigit knows no others)."""
    for key in ("meter_uart", "modem_uart"):
        port = cfg[key].rpartition(":")[2]
        if not all("0" <= ch <= "9" for ch in port):
            return "%s port %r" % (key, port)
    for a in cfg["meters"]:
        if not all("0" <= ch <= "9" for ch in a):
            return "meter address %r" % (a,)
    return None


def _unicode_digits_reproducer():
    """Non-ASCII digits in a port or a meter address are refused with ConfigError (as on MicroPython)."""
    for doc in ({"meter_uart": "h:\u00b2"}, {"modem_uart": "h:\u0663"}, {"meters": ["\uff11" * 12]}):
        try:
            config.validate(doc)
        except config.ConfigError:
            continue
        except ValueError as e:
            raise AssertionError("%r: %s instead of ConfigError: %s" % (doc, type(e).__name__, e))
        raise AssertionError("%r accepted" % (doc,))


def _non_finite_reproducer():
    """JSON 1e999 (inf) and -1e999 are refused where a number is expected: the config must stay writable JSON."""
    for doc in ({"relocation_m": json.loads("1e999")}, {"hdop_max": json.loads("1e999")}):
        try:
            config.validate(doc)
        except config.ConfigError:
            continue
        raise AssertionError("%r accepted" % (doc,))


def _deep_file_reproducer():
    """load() of a file nested deeper than the JSON parser allows falls back instead of raising."""
    d = tempfile.mkdtemp(prefix="bdmeter-fuzz-")
    try:
        path = os.path.join(d, "config.json")
        with open(path, "w") as f:
            f.write("[" * 5000)
        try:
            cfg, source, _ = config.load(path)
        except RecursionError as e:
            raise AssertionError("RecursionError escaped load: %s" % e)
        assert source == "defaults"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_config_unicode_digits_refused():
    _unicode_digits_reproducer()


def test_config_non_finite_refused():
    _non_finite_reproducer()


def test_config_load_deep_file_falls_back():
    _deep_file_reproducer()


def _active():
    return {"config-unicode-digits": reproduces(_unicode_digits_reproducer),
            "config-non-finite": reproduces(_non_finite_reproducer),
            "config-load-deep": reproduces(_deep_file_reproducer)}


def _validate_one(camp, active, rng):
    doc = _document(rng)
    try:
        cfg = config.validate(doc)
    except config.ConfigError:
        camp.outcome("validate_config_error")
        return
    except ValueError as e:
        if active["config-unicode-digits"]:
            camp.known_hit("config-unicode-digits")
        else:
            camp.fail(doc, "ValueError instead of ConfigError: %s" % e, e)
        return
    except Exception as e:
        camp.fail(doc, "%s escaped validate: %s" % (type(e).__name__, e), e)
        return
    broken = _contract(cfg)
    if broken and _non_finite(cfg) and active["config-non-finite"]:
        camp.known_hit("config-non-finite")
        return
    digits = _ascii_digits(cfg)
    if digits and active["config-unicode-digits"]:
        camp.known_hit("config-unicode-digits")
        return
    broken = broken or digits
    if not broken:
        for k, v in doc.items():  # an override that validated is what the config holds
            if cfg[k] != v:
                broken = "%s not taken over" % k
    if broken:
        camp.fail(doc, broken)
    else:
        camp.outcome("validate_valid")


def _resolve_one(camp, rng):
    doc = _document(rng)
    secrets = {}
    if isinstance(doc, dict) and rng.randrange(3) == 0:  # a secret that is wrong, and must still not be shown
        key = rng.choice(config.SECRETS)
        doc[key] = secrets[key] = rng.choice((
            "s3cr3t-%08x" % rng.getrandbits(32), "%062x" % rng.getrandbits(248),
            "%064x" % rng.getrandbits(256) + "zz", 'pa"ss-%08x' % rng.getrandbits(32)))
    try:
        cfg, problems = config.resolve(doc, rng.choice((None, {}, {"poll_s": 77}, {"poll_s": "x"})))
    except config.ConfigError:
        camp.outcome("resolve_not_object" if not isinstance(doc, dict) else "resolve_refused_object")
        if isinstance(doc, dict):
            camp.fail(doc, "resolve refused an object")
        return
    except Exception as e:
        camp.fail(doc, "%s escaped resolve: %s" % (type(e).__name__, e), e)
        return
    broken = _contract(cfg) or _ascii_digits(cfg)
    listed = {p[1] for p in problems}
    for k, v in doc.items():
        if k not in listed and cfg.get(k) != v:
            broken = broken or "%r neither taken over nor listed" % (k,)
    text = "\n".join(p[2] for p in problems)
    for v in secrets.values():
        if v in text or v[:8] in text:
            broken = broken or "a secret shown in a problem"
    if broken:
        camp.fail(doc, broken)
    else:
        camp.outcome("resolve_problems" if problems else "resolve_clean")


# -- load ----------------------------------------------------------------------------------------
def _file_bytes(rng):
    """Contents for a config file: good, bad, truncated, corrupt, random, deep, not UTF-8, empty."""
    k = rng.randrange(12)
    if k < 4:
        doc = {key: _good(rng, key) for key in rng.sample(_KEYS, rng.randint(0, 8))}
        text = json.dumps(doc, ensure_ascii=rng.randrange(2) == 0, indent=rng.choice((None, 1)))
        return text.encode()
    if k < 6:
        return json.dumps(_document(rng), allow_nan=True).encode("utf-8", "surrogatepass")
    if k == 6:  # truncated (a power cut while writing without the temp-and-rename dance)
        text = json.dumps({key: _good(rng, key) for key in rng.sample(_KEYS, rng.randint(1, 8))}).encode()
        return text[:rng.randrange(len(text))]
    if k == 7:
        return mutate(rng, json.dumps({key: _good(rng, key) for key in rng.sample(_KEYS, 4)}).encode())
    if k == 8:
        return random_bytes(rng, 0, 200)
    if k == 9:  # deep or very deep
        return rng.choice((deep_text(rng, rng.choice((10, 300, 2000))), "[" * rng.choice((500, 5000)),
                           '{"poll_s":' * 3000)).encode()
    if k == 10:  # not UTF-8, or NUL-filled like erased-then-torn flash
        return rng.choice((b'{"apn": "\xff\xfe"}', b"\xff" * rng.randint(1, 64), b"\x00" * rng.randint(1, 64),
                           b'{"poll_s": 60}\xc3'))
    return rng.choice((b"", b" ", b"{}", b"null", b"[]", b'{"poll_s": 60}', b'{"poll_s": NaN}',
                       b'{"hdop_max": Infinity}', b'{"hdop_max": 1e999}', b"\xef\xbb\xbf{}"))


def _object(data):
    """The JSON object a file holding `data` parses to (None: missing, not JSON, not an object)."""
    if data is None:
        return None
    try:  # load() reads in text mode: the locale's encoding, strict
        doc = json.loads(data.decode(_ENCODING))
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _expected(main, last):
    """(cfg, source) load() must return for these file contents (None: missing file)."""
    last_doc = _object(last)
    last_cfg = config.resolve(last_doc)[0] if last_doc is not None else None
    doc = _object(main)
    if doc is not None:
        return config.resolve(doc, config.overrides_of(last_cfg) if last_cfg else None)[0], "file"
    if last_cfg is not None:
        return last_cfg, "last good"
    return _DEFAULTS, "defaults"


def _scratch():
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # tmpfs where there is one: this is I/O bound
    return tempfile.mkdtemp(prefix="bdmeter-fuzz-", dir=base)


def _load_one(camp, active, rng, path):
    good = path + ".good"
    main = _file_bytes(rng) if rng.randrange(10) else None
    last = rng.choice((None, _file_bytes(rng), b'{"poll_s": 77}'))
    _put(path, main)
    _put(good, last)
    try:
        cfg, source, _ = config.load(path)
    except RecursionError as e:
        if active["config-load-deep"]:
            camp.known_hit("config-load-deep")
        else:
            camp.fail((main, last), "RecursionError escaped load", e)
        return
    except Exception as e:
        camp.fail((main, last), "%s escaped load: %s" % (type(e).__name__, e), e)
        return
    broken = _contract(cfg)
    if broken and _non_finite(cfg) and active["config-non-finite"]:
        camp.known_hit("config-non-finite")
        return
    if _ascii_digits(cfg) and active["config-unicode-digits"]:
        camp.known_hit("config-unicode-digits")
        return
    if not broken:
        want = _expected(main, last)
        if source != want[1] or cfg != want[0]:
            broken = "returned %s, expected %s" % (source, want[1])
        elif source == "file" and (_object(_read(good)) is None or config.resolve(_object(_read(good)))[0] != cfg):
            broken = "the loaded config was not kept as the last good copy"
    if broken:
        camp.fail((main, last), broken)
    else:
        camp.outcome("load_from_" + source.replace(" ", "_"))


def _put(p, data):
    if data is None:
        if os.path.exists(p):
            os.remove(p)
    else:
        with open(p, "wb") as f:
            f.write(data)


def test_fuzz_config_files():
    camp = Campaign("config")
    active = _active()
    d = _scratch()
    path = os.path.join(d, "config.json")
    try:
        camp.run("validate", count(100_000), lambda rng: _validate_one(camp, active, rng))
        camp.run("resolve", count(50_000), lambda rng: _resolve_one(camp, rng))
        # load is file I/O bound (about ten times the cost of validate): fewer inputs, same generators
        camp.run("load", count(25_000), lambda rng: _load_one(camp, active, rng, path))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    rep = camp.check()
    if rep["scale"] >= 1:
        assert rep["parts"]["validate"]["inputs"] >= 100_000
        out = rep["outcomes"]
        assert out.get("validate_valid", 0) > 5000 and out.get("validate_config_error", 0) > 5000
        for src in ("file", "last_good", "defaults"):
            assert out.get("load_from_" + src, 0) > 1000, "too few loads ended from %s" % src


def _read(p):
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError:
        return None
