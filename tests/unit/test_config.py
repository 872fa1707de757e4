"""Config: key-by-key validation and fallback, every problem listed, bounds, secrets never shown, known good copy."""

import json

from portable import raises, rmtree, scratch

from firmware import config
from firmware.knowngood import KnownGood

KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"


class _Log:
    """Collects every formatted line, as the firmware's handler would print them."""

    def __init__(self):
        self.lines = []

    def _add(self, fmt, *args):
        self.lines.append(fmt % args if args else fmt)

    debug = info = warning = error = _add


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_defaults_are_valid():
    cfg = config.validate({})
    assert cfg["topic_prefix"] == "bdmeter" and cfg["poll_s"] == 900 and cfg["heartbeat_s"] == 300
    assert cfg["config_fallback_s"] == 21600


def test_bad_values_refused():
    for k, v in (("poll_s", 0), ("poll_s", "60"), ("poll_s", True), ("terminal_id", "a/b"),
                 ("topic_prefix", "x+y"), ("terminal_id", "#"), ("meters", ["123"]), ("cmd_key", "abc"),
                 ("inst", ["volts"]), ("nope", 1), ("meter_baud", 300), ("modem_uart", "nohost")):
        raises(config.ConfigError, config.validate, {k: v})
    raises(config.ConfigError, config.validate, [1, 2])


def test_numbers_and_lists_are_bounded():
    # regressions: relocation_m=1e308, hdop_max=1e-300 and duplicate inst items were accepted
    for k, v in (("relocation_m", 1e308), ("relocation_m", 0.001), ("hdop_max", 1e-300), ("hdop_max", 1e6),
                 ("inst", ["v", "v"]), ("meters", ["000072007201", "000072007201"]),
                 ("meters", ["%012d" % i for i in range(33)]), ("config_fallback_s", 5), ("broker_port", 0),
                 ("apn", 'x",1,"y'), ("apn_pass", "p" * 65), ("broker_host", "a b"), ("cmd_key", "00" * 65)):
        raises(config.ConfigError, config.check, k, v)
    for k, v in (("relocation_m", 10), ("relocation_m", 100000), ("hdop_max", 0.5), ("hdop_max", 50),
                 ("inst", ["v", "i", "p", "pf", "f"]), ("config_fallback_s", 0), ("config_fallback_s", 10),
                 ("meters", ["%012d" % i for i in range(32)]), ("cmd_key", "00" * 64)):
        assert config.check(k, v) == v


def test_unknown_key_is_ignored_and_the_rest_used():
    # regression: one unknown key ("pol_s") refused the whole file: broker 127.0.0.1 and no cmd_key
    d = scratch("config-unknown")
    path = d + "/config.json"
    _write(path, json.dumps({"pol_s": 60, "broker_host": "10.1.2.3", "cmd_key": KEY, "heartbeat_s": 120}))
    log = _Log()
    cfg, src, problems = config.load(path, log)
    assert src == "file" and cfg["broker_host"] == "10.1.2.3" and cfg["cmd_key"] == KEY
    assert cfg["heartbeat_s"] == 120 and cfg["poll_s"] == 900
    assert [(p[0], p[1]) for p in problems] == [("unknown", "pol_s")]
    assert "did you mean poll_s" in problems[0][2]
    assert [ln for ln in log.lines if "pol_s" in ln], log.lines
    assert config.problem_keys(problems) == {"unknown": ["pol_s"], "bad": []}
    rmtree(d)


def test_bad_value_falls_back_for_that_key_alone_and_every_problem_is_listed():
    d = scratch("config-bad")
    path = d + "/config.json"
    config.save(path, {"poll_s": 60, "gnss_s": 30})
    cfg, src, problems = config.load(path)  # a good load: kept as the last good copy
    assert src == "file" and not problems
    _write(path, json.dumps({"poll_s": -5, "gnss_s": "x", "heartbeat_s": 0, "min_sats": 6, "zz": 1, "aa": 2}))
    cfg, src, problems = config.load(path)
    assert src == "file" and cfg["min_sats"] == 6
    assert cfg["poll_s"] == 60 and cfg["gnss_s"] == 30  # the last good copy's values
    assert cfg["heartbeat_s"] == 300  # never set before: the default
    assert sorted((p[0], p[1]) for p in problems) == [("bad", "gnss_s"), ("bad", "heartbeat_s"),
                                                      ("bad", "poll_s"), ("unknown", "aa"), ("unknown", "zz")]
    assert config.problem_keys(problems) == {"unknown": ["aa", "zz"], "bad": ["gnss_s", "heartbeat_s", "poll_s"]}
    e = raises(config.ConfigError, config.validate, {"poll_s": -5, "gnss_s": "x", "zz": 1})
    assert "poll_s" in str(e) and "gnss_s" in str(e) and "zz" in str(e)  # all of them, not only the first
    rmtree(d)


def test_load_falls_back_whole_only_for_a_file_that_is_not_an_object():
    d = scratch("config")
    path = d + "/config.json"
    cfg, src, problems = config.load(path)
    assert src == "defaults" and not problems
    config.save(path, {"poll_s": 60})
    cfg, src, problems = config.load(path)
    assert src == "file" and cfg["poll_s"] == 60
    for text in ('{"poll_s": ', "[1, 2]", ""):  # torn or hand-broken file
        _write(path, text)
        cfg, src, problems = config.load(path)
        assert src == "last good" and cfg["poll_s"] == 60
        assert [p[0] for p in problems] == ["file"] and "file" in config.problem_keys(problems)
    rmtree(d)


def test_secrets_never_appear_in_messages():
    # regression: a bad cmd_key was printed in full in the error, likewise broker_pass
    d = scratch("config-secret")
    path = d + "/config.json"
    bad_key = "000102030405060708090a0b0c0d0e0f10111213141516171819zz"
    bad_pass = 'pa"ss-w0rd-s3cret'
    bad_apn_pass = "apn-" + "s" * 70
    _write(path, json.dumps({"cmd_key": bad_key, "broker_pass": bad_pass, "apn_pass": bad_apn_pass,
                             "cmd_kye": KEY}))
    log = _Log()
    cfg, src, problems = config.load(path, log)
    text = "\n".join(log.lines) + "\n".join(p[2] for p in problems)
    for key in ("cmd_key", "broker_pass", "apn_pass"):
        assert key in text
    for secret in (bad_key, bad_key[:8], bad_pass, "s3cret", bad_apn_pass[:10], KEY, KEY[:8]):
        assert secret not in text, secret
    assert "secret, not shown" in text
    for k, v in (("cmd_key", bad_key), ("broker_pass", 12345678), ("apn_pass", ["s3cret"])):
        msg = str(raises(config.ConfigError, config.check, k, v))
        assert "s3cret" not in msg and "12345678" not in msg and bad_key[:8] not in msg
    rmtree(d)


def test_redacted_hides_secrets():
    cfg = config.validate({"cmd_key": "00" * 32, "broker_pass": "pw"})
    shown = config.redacted(cfg)
    assert "cmd_key" not in shown and "broker_pass" not in shown and "apn_pass" not in shown
    assert "poll_s" in shown
    assert "pw" not in json.dumps(shown)


def test_non_finite_and_foreign_digits_refused():
    # regressions (found by fuzzing): inf was accepted and then saved as JSON nobody can read back
    for k, v in (("relocation_m", float("inf")), ("hdop_max", float("inf")), ("hdop_max", float("nan")),
                 ("modem_uart", "host:\u00b2"), ("meters", ["\uff11" * 12])):
        raises(config.ConfigError, config.validate, {k: v})


def test_known_good_fallback_after_a_silence_once_per_file():
    # regression: a valid but wrong config (an unreachable broker) was kept for ever
    d = scratch("config-known")
    path = d + "/config.json"
    good = config.validate({"broker_host": "10.0.0.1", "config_fallback_s": 100})
    kg = KnownGood(path)
    assert kg.choose(good, "file") == (good, "file")
    assert kg.tick(0, True, good) is None
    kg.reached(good)  # CONNACK + PUBACK with this config
    # a new file with a wrong broker: silent for 1000 s, counted across a reset -> fall back
    wrong = config.validate({"broker_host": "10.9.9.9", "config_fallback_s": 1000})
    kg = KnownGood(path)
    assert kg.choose(wrong, "file") == (wrong, "file")
    for now in range(0, 700, 10):
        assert kg.tick(now, False, wrong) is None  # at 600 s the silence so far is saved
    kg = KnownGood(path)  # a reset (the modem ladder's, say): the silence counts on from 600 s
    assert kg.choose(wrong, "file") == (wrong, "file")
    assert kg.tick(300, False, wrong) is None
    silent = kg.tick(400, False, wrong)
    assert silent is not None and silent >= 1000
    kg.fall_back(wrong)
    # after the reset: the known good copy runs, and it never falls back again, however long the silence
    kg = KnownGood(path)
    cfg, src = kg.choose(wrong, "file")
    assert src == "known good" and cfg["broker_host"] == "10.0.0.1"
    for now in range(0, 100000, 5000):
        assert kg.tick(now, False, cfg) is None
    # a new file (a deploy, a config.set) gets its own chance
    fixed = config.validate({"broker_host": "10.0.0.2", "config_fallback_s": 100})
    kg = KnownGood(path)
    assert kg.choose(fixed, "file") == (fixed, "file")
    assert kg.tick(50, False, fixed) is None
    assert kg.tick(0, True, fixed) is None and kg.tick(99, False, fixed) is None  # contact restarts the count
    rmtree(d)


def test_known_good_not_used_when_it_is_the_same_config_or_disabled():
    d = scratch("config-known2")
    path = d + "/config.json"
    cfg = config.validate({"config_fallback_s": 10})
    kg = KnownGood(path)
    kg.reached(cfg)
    assert kg.tick(1000, False, cfg) is None  # nothing better to go back to
    other = config.validate({"config_fallback_s": 0, "broker_port": 1884})
    assert kg.tick(100000, False, other) is None  # 0: never
    assert kg.tick(1000, False, config.validate({"config_fallback_s": 10, "broker_port": 1884})) is not None
    rmtree(d)
