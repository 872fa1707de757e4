"""Config: validation, last-good fallback, atomic save, secrets never shown."""

import json

from portable import raises, rmtree, scratch

from firmware import config


def test_defaults_are_valid():
    cfg = config.validate({})
    assert cfg["topic_prefix"] == "bdmeter" and cfg["poll_s"] == 900 and cfg["heartbeat_s"] == 300


def test_bad_values_refused():
    for k, v in (("poll_s", 0), ("poll_s", "60"), ("poll_s", True), ("terminal_id", "a/b"),
                 ("topic_prefix", "x+y"), ("terminal_id", "#"), ("meters", ["123"]), ("cmd_key", "abc"),
                 ("inst", ["volts"]), ("nope", 1), ("meter_baud", 300), ("modem_uart", "nohost")):
        raises(config.ConfigError, config.validate, {k: v})
    raises(config.ConfigError, config.validate, [1, 2])


def test_load_falls_back_to_last_good_then_defaults():
    d = scratch("config")
    path = d + "/config.json"
    cfg, src = config.load(path)
    assert src == "defaults"
    config.save(path, {"poll_s": 60})
    cfg, src = config.load(path)
    assert src == "file" and cfg["poll_s"] == 60
    with open(path, "w") as f:
        f.write('{"poll_s": ')  # torn or hand-broken file
    cfg, src = config.load(path)
    assert src == "last good" and cfg["poll_s"] == 60
    config.save(path, {"poll_s": -5})
    cfg, src = config.load(path)
    assert src == "last good" and cfg["poll_s"] == 60
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
