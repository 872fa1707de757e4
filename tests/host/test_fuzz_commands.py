"""Fuzzing server commands: `Auth.check` on random and signed envelopes, and the ops' argument checks.

Auth inputs: random bytes, mutated valid envelopes, JSON of the wrong shape,
deep and huge structures, unicode (lone surrogates included), and envelopes
correctly signed around random bodies so the checks after the MAC run too.
Pass: a body dict that meets the documented contract, or `Refused` with a
documented code (counted once); nothing else. Op inputs: random `args` for
`query`, `config.get` and `config.set` against a stand-in terminal. Pass: a
result that is strict JSON and keeps secrets out and the config valid, or
`Refused` with `bad_args` / `forbidden_key`.
"""

import json
import math
import shutil
import tempfile
from types import SimpleNamespace


from firmware import config
from firmware.auth import MAX_ENVELOPE, NONCES, Auth, Refused, sign
from firmware.commands import Commands
from fuzzkit import Campaign, count, deep_text, dumps, mutate, random_bytes, random_json, reproduces, to_bytes

KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
TID = "861234567890123"
NOW = 1795430400
SKEW = 300
_CODES = ("too_large", "malformed", "bad_mac", "stale", "replay", "busy")
_EXPECTED = _CODES[:5]  # "busy" needs more same-second commands than the store holds: rare by design
_OPS = ("query", "read", "status", "config.get", "config.set", "sync_time", "reboot", "nope", "")
_SESSION = 2000  # checks against one Auth (its nonce store fills and prunes) before a fresh one


def _valid_body(rng, nonce=None, ts=None):
    return {"id": "q-%d" % rng.randrange(10 ** 6), "op": rng.choice(_OPS[:7]), "args": {},
            "ts": NOW + rng.randint(-SKEW, SKEW) if ts is None else ts,
            "nonce": nonce or "%016x" % rng.getrandbits(64)}


def _env(body_text, mac=None):
    if mac is None:
        try:
            mac = sign(KEY, TID, body_text)
        except UnicodeEncodeError:  # a lone surrogate in raw text: no server can sign it either
            mac = "0" * 64
    return json.dumps({"body": body_text, "mac": mac}, separators=(",", ":")).encode()


def _field(rng, name):
    """A value for one body field: right type and range mostly, anything now and then."""
    k = rng.randrange(6)
    if k == 0:
        return random_json(rng, 2)
    if name == "id":
        return rng.choice(("q-1", "", "x" * 40, "x" * 41, "\u5317\u6597", 7, None))
    if name == "ts":
        return rng.choice((NOW, NOW + SKEW, NOW - SKEW, NOW + SKEW + 1, NOW - SKEW - 1, 0, -1, 2 ** 70, True,
                           float(NOW), str(NOW), NOW + rng.randint(-1000, 1000)))
    if name == "nonce":
        return rng.choice(("a" * 7, "a" * 8, "a" * 64, "a" * 65, "%016x" % rng.getrandbits(64), "", 12345678,
                           "\U0001f600" * 8, "n" * rng.randint(0, 70)))
    if name == "op":
        return rng.choice(_OPS + (1, None, ["query"]))
    return rng.choice(({}, {"what": "energy"}, [], None, "x", {"set": {"poll_s": 60}}, random_json(rng, 3)))


def _signed_random_body(rng):
    k = rng.randrange(6)
    if k == 0:  # any JSON at all
        text = dumps(rng, random_json(rng, 4))
    elif k == 1:  # not JSON
        text = mutate(rng, dumps(rng, _valid_body(rng)).encode()).decode("utf-8", "replace")
    elif k == 2:  # deeply nested, within the envelope's size
        text = deep_text(rng, rng.choice((10, 200, 400, 460)))
    else:  # the right fields with wrong-ish values, some missing, some extra
        body = {}
        for name in ("id", "op", "args", "ts", "nonce"):
            if rng.randrange(8):
                body[name] = _field(rng, name)
        if rng.randrange(4) == 0:
            body[rng.choice(("x", "ID", "\u00e9"))] = random_json(rng, 1)
        text = dumps(rng, body)
    return text


def _payload(rng, accepted):
    """One Auth.check input and whether the current clock is trusted."""
    trusted = rng.randrange(8) != 0
    k = rng.randrange(12)
    if k == 0:
        return random_bytes(rng, 0, rng.choice((40, 400, 1100))), trusted
    if k in (1, 2):  # a valid envelope, mutated
        return mutate(rng, _env(dumps(rng, _valid_body(rng)))), trusted
    if k == 3:  # the envelope's shape wrong
        env = rng.choice(({"body": random_json(rng, 2), "mac": random_json(rng, 1)},
                          {"body": "{}", "mac": "".join(rng.choice("0123456789abcdefg\u00e9") for _ in range(64))},
                          {"body": "{}", "mac": "00" * rng.randint(0, 40)},
                          {"body": "{}"}, {"mac": "00" * 32}, random_json(rng, 3)))
        return to_bytes(dumps(rng, env)), trusted
    if k == 4:  # deep or huge, unsigned
        depth = rng.choice((20, 300, 500, 900, 1000, 1023))
        text = rng.choice((deep_text(rng, depth), "[" * depth, '{"body":' * depth,
                           '{"body":"x","mac":"' + "0" * 64 + '","pad":"' + "x" * depth + '"}',
                           '{"body":' + "9" * depth + "}"))
        return text.encode()[:MAX_ENVELOPE + rng.randrange(2)], trusted
    if k == 5:  # unicode in an unsigned body: lone surrogates, astral planes, controls
        body = rng.choice(("\ud800", "\udfff{}", '{"id":"\ud83d"}', "\U0001f600", "\x00", "\u2028",
                           dumps(rng, random_json(rng, 2))))
        mac = "%064x" % rng.getrandbits(256)
        return to_bytes(json.dumps({"body": body, "mac": mac}, ensure_ascii=rng.randrange(2) == 0)), trusted
    if k == 6 and accepted:  # a replay of an accepted envelope
        return rng.choice(accepted), True
    if k in (6, 7, 8, 9):  # correctly signed random bodies: the checks after the MAC
        return _env(_signed_random_body(rng)), trusted
    # a valid signed command (accepted when the clock is trusted and the nonce is new)
    return _env(dumps(rng, _valid_body(rng))), trusted


def _contract(body, now):
    """None when an accepted body meets the documented contract, else what breaks it."""
    if not isinstance(body, dict):
        return "not a dict"
    rid, ts, nonce = body.get("id"), body.get("ts"), body.get("nonce")
    if not isinstance(rid, str) or not 0 < len(rid) <= 40:
        return "id %r" % (rid,)
    if not isinstance(body.get("op"), str) or not isinstance(body.get("args"), dict):
        return "op or args"
    if not isinstance(ts, int) or isinstance(ts, bool) or abs(ts - now) > SKEW:
        return "ts %r" % (ts,)
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 64:
        return "nonce %r" % (nonce,)
    return None


def _deep_json_reproducer():
    """Nesting deeper than the parser allows is a malformed envelope or body, not a RecursionError."""
    a = Auth(TID, KEY)
    deep = "[" * 930 + "]" * 10  # within the envelope's size once wrapped
    for payload in (b"[" * 1000, _env(deep, mac="00" * 32), _env(deep)):
        try:
            a.check(payload, NOW, True)
        except Refused:
            continue
        except RecursionError as e:
            raise AssertionError("RecursionError escaped Auth.check: %s" % e)


def _surrogate_body_reproducer():
    """A body with a lone surrogate (legal JSON escape, not encodable text) is refused, not a UnicodeEncodeError."""
    a = Auth(TID, KEY)
    try:
        a.check(b'{"body":"\\ud800","mac":"' + b"0" * 64 + b'"}', NOW, True)
    except Refused as e:
        assert e.code in ("malformed", "bad_mac"), e.code
    except UnicodeError as e:
        raise AssertionError("UnicodeError escaped Auth.check: %s" % e)


def _replay_after_eviction_reproducer():
    """With the nonce store full, a command older than every stored one must still be refused when replayed."""
    a = Auth(TID, KEY, SKEW)
    for i in range(256):
        a.check(_env(json.dumps(_body(NOW, "n%07d" % i))), NOW, True)
    old = _env(json.dumps(_body(NOW - 200, "old-nonce")))
    a.check(old, NOW, True)
    try:
        a.check(old, NOW, True)
    except Refused as e:
        assert e.code == "replay", e.code
        return
    raise AssertionError("the same signed command ran twice")


def _body(ts, nonce):
    return {"id": "q-1", "op": "status", "args": {}, "ts": ts, "nonce": nonce}


def test_auth_replay_after_nonce_eviction_is_refused():
    _replay_after_eviction_reproducer()


def test_auth_deep_nesting_is_malformed():
    _deep_json_reproducer()


def test_auth_lone_surrogate_body_is_refused():
    _surrogate_body_reproducer()


def _known_auth_bug(e, active):
    if isinstance(e, RecursionError) and active["auth-deep-json"]:
        return "auth-deep-json"
    if isinstance(e, UnicodeEncodeError) and active["auth-surrogate-body"]:
        return "auth-surrogate-body"
    return None


def test_fuzz_auth_check():
    camp = Campaign("auth")
    active = {"auth-deep-json": reproduces(_deep_json_reproducer),
              "auth-surrogate-body": reproduces(_surrogate_body_reproducer),
              "auth-replay-eviction": reproduces(_replay_after_eviction_reproducer)}
    state = {"auth": Auth(TID, KEY, SKEW), "n": 0, "accepted": []}

    def one(rng):
        if state["n"] >= _SESSION:
            state["auth"], state["n"], state["accepted"] = Auth(TID, KEY, SKEW), 0, []
        state["n"] += 1
        auth = state["auth"]
        payload, trusted = _payload(rng, state["accepted"])
        now = NOW + rng.choice((0, 0, 0, 1, -1, 299, 301, -301))
        before = auth.refused
        try:
            body = auth.check(payload, now, trusted)
        except Refused as e:
            if e.code not in _CODES:
                camp.fail(payload, "undocumented refusal %r" % (e.code,))
            elif auth.refused != before + 1:
                camp.fail(payload, "refusal not counted once (%d -> %d)" % (before, auth.refused))
            elif e.code in ("stale", "replay") and not isinstance(e.id, str):
                camp.fail(payload, "%s without the request id" % e.code)
            else:
                camp.outcome("refused_" + e.code)
            return
        except Exception as e:
            bug = _known_auth_bug(e, active)
            if bug:
                camp.known_hit(bug)
            else:
                camp.fail(payload, "%s escaped Auth.check: %s" % (type(e).__name__, e), e)
            return
        broken = _contract(body, now) or (None if trusted else "accepted on an untrusted clock")
        if broken:
            camp.fail(payload, "accepted body breaks the contract: " + broken)
            return
        camp.outcome("accepted")
        if len(state["accepted"]) < 64:
            state["accepted"].append(payload)
        try:  # the same envelope again at once is a replay
            auth.check(payload, now, True)
            if active["auth-replay-eviction"] and len(auth.nonces) >= NONCES:
                camp.known_hit("auth-replay-eviction")
            else:
                camp.fail(payload, "immediate replay accepted")
        except Refused as e:
            if e.code != "replay":
                camp.fail(payload, "immediate replay refused as %s" % e.code)

    camp.run("envelopes", count(100_000), one)
    rep = camp.check()
    if rep["scale"] >= 1:
        for code in _EXPECTED:
            assert rep["outcomes"].get("refused_" + code), "no input was refused as %s" % code
        assert rep["outcomes"].get("accepted", 0) > 1000


# -- op arguments ------------------------------------------------------------------------------
class _Pos:
    def __init__(self, d):
        self.d = d

    def as_dict(self):
        return dict(self.d) if self.d is not None else None


class _Log:
    def debug(self, *a):
        pass

    info = warning = error = debug


class _Terminal:
    """What Commands and its query/config ops touch of the terminal, and nothing else."""

    def __init__(self, state_dir, n_meters=2, pos=None):
        self.tid = TID
        self.log = _Log()
        self.cfg = config.validate({"state_dir": state_dir, "cmd_key": KEY, "broker_pass": "secret",
                                    "apn_pass": "secret2"})
        self.meters = ["000072007201", "000072007202"][:n_meters]
        self.locating = SimpleNamespace(pos=_Pos(pos), fix=pos is not None)
        self.metering = SimpleNamespace(last={m: {"ts": NOW, "tsrc": "gnss", "kwh": {"fwd": 1.5}} for m in self.meters})

    def apply_config(self, changes):
        self.cfg.update(changes)


_POS = {"lat": 40.842511, "lon": 111.749032, "alt": 1065.2, "hdop": 0.9, "nsat": 9, "n": 24}


def _arg_value(rng, what):
    k = rng.randrange(8)
    if k == 0:
        return random_json(rng, 3)
    if k == 1:  # deep, as a body within the envelope's size could hold
        return json.loads(deep_text(rng, rng.choice((5, 100, 450))))
    if what == "what":
        pool = ["address", "position", "energy", "Energy", "", None, 1, [], {}]
        v = [rng.choice(pool) for _ in range(rng.randint(0, 4))]
        return rng.choice((v, v, "energy", "x", None, []))
    if what == "keys":
        pool = list(config.defaults()) + ["nope", "", "CMD_KEY", 1, None, ["poll_s"]]
        v = [rng.choice(pool) for _ in range(rng.randint(0, 5))]
        return rng.choice((v, v, "poll_s", {}, 0, None))
    pool = list(config.SETTABLE) * 3 + list(config.SECRETS) + ["board", "nope", "", "poll_S"]
    d = {}
    for _ in range(rng.randint(0, 4)):
        key = rng.choice(pool)
        d[key] = _good_value(rng, key) if rng.randrange(3) else _bad_value(rng)
    return rng.choice((d, d, d, d, d, [], None, "poll_s=60"))


def _good_value(rng, key):
    """A value config.check accepts for a settable key (and something plausible for the others)."""
    if key in ("poll_s", "heartbeat_s", "gnss_s"):
        return rng.randint(1, 86400)
    if key in ("relocation_m", "hdop_max"):
        return rng.choice((rng.uniform(0.1, 1000), rng.randint(1, 5000)))
    if key == "min_sats":
        return rng.randint(1, 64)
    if key == "inst":
        return rng.sample(["v", "i", "p", "pf", "f"], rng.randint(0, 5))
    if key == "time_sync_meters":
        return rng.random() < 0.5
    if key == "cmd_max_skew_s":
        return rng.randint(10, 86400)
    return "x"


def _bad_value(rng):
    return rng.choice((random_json(rng, 1), rng.randint(-5, 100000), json.loads("1e999"), -json.loads("1e999"),
                       float("nan"), 0, -0.5, ["v", "volts"], True, "60", [], {}, None, 2 ** 64, 86401))


def _strict_json(value):
    """None when value is strict JSON (what the resp message and the config file must be), else why not."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError as e:
        return str(e)
    return None


def _non_finite_reproducer():
    """config.set with an overflowing number (JSON 1e999 parses to inf) is bad_args, not an unwritable config."""
    tmp = tempfile.mkdtemp(prefix="bdmeter-fuzz-")
    try:
        t = _Terminal(tmp)
        cmds = Commands(t)
        for key in ("relocation_m", "hdop_max"):
            try:
                _run(cmds._config_set({"set": {key: json.loads("1e999")}}))
            except Refused as e:
                assert e.code == "bad_args"
                continue
            raise AssertionError("%s=inf accepted: %r" % (key, t.cfg[key]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_config_set_non_finite_is_bad_args():
    _non_finite_reproducer()


def _run(coro):
    """Run a coroutine that must not wait on anything to completion (the ops here only check and compute)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("op suspended: it awaited something")


def _check_op(t, op, result, active):
    """(why the result is wrong or None, name of the known bug it shows or None)."""
    problem = _strict_json(result)
    if problem:
        if active["config-non-finite"] and op == "config.set" and \
                any(isinstance(v, float) and not math.isfinite(v) for v in result["config"].values()):
            return None, "config-non-finite"
        return "result is not strict JSON: " + problem, None
    if op == "config.get":
        if any(k in config.SECRETS for k in result.get("config", {})):
            return "secret returned", None
    if op == "config.set":
        if any(k not in config.SETTABLE for k in result["config"]):
            return "a key outside SETTABLE changed", None
        for k, v in t.cfg.items():
            try:
                config.check(k, v)
            except config.ConfigError as e:
                return "config no longer valid: %s" % e, None
    return None, None


def test_fuzz_command_args():
    camp = Campaign("commands")
    tmp = tempfile.mkdtemp(prefix="bdmeter-fuzz-")
    active = {"config-non-finite": reproduces(_non_finite_reproducer)}
    ops = (("query", "what"), ("config.get", "keys"), ("config.set", "set"))
    state = {"n": 10 ** 9}

    def one(rng):
        if state["n"] >= 500:  # a fresh terminal now and then: its config changes as config.set succeeds
            state["t"] = _Terminal(tmp, rng.randint(0, 2), rng.choice((None, _POS)))
            state["cmds"], state["n"] = Commands(state["t"]), 0
        state["n"] += 1
        t, cmds = state["t"], state["cmds"]
        op, name = rng.choice(ops)
        k = rng.randrange(10)
        if k == 0:
            args = random_json(rng, 3) if rng.randrange(2) else {}
            if not isinstance(args, dict):
                args = {"x": args}
        else:
            args = {name: _arg_value(rng, name)}
            if k == 1:
                args[rng.choice(("what", "keys", "set", "x"))] = random_json(rng, 2)
        fn = {"query": cmds._query, "config.get": cmds._config_get, "config.set": cmds._config_set}[op]
        try:
            result = _run(fn(args))
        except Refused as e:
            if e.code in ("bad_args", "forbidden_key"):
                camp.outcome("%s_refused_%s" % (op, e.code))
            else:
                camp.fail(args, "%s refused with undocumented %r" % (op, e.code))
            return
        except Exception as e:
            camp.fail(args, "%s: %s escaped: %s" % (op, type(e).__name__, e), e)
            return
        why, bug = _check_op(t, op, result, active)
        if why or bug:
            if bug:
                camp.known_hit(bug)
            else:
                camp.fail(args, "%s: %s" % (op, why))
            state["n"] = 10 ** 9  # the stand-in's config may be spoilt: start afresh
        else:
            camp.outcome(op + "_ok")

    try:
        camp.run("args", count(100_000), one)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rep = camp.check()
    if rep["scale"] >= 1:
        for op, _ in ops:
            assert rep["outcomes"].get(op + "_ok"), "no %s input was accepted" % op
            assert rep["outcomes"].get(op + "_refused_bad_args"), "no %s input was refused as bad_args" % op
        for op in ("config.get", "config.set"):
            assert rep["outcomes"].get(op + "_refused_forbidden_key"), "no %s forbidden_key" % op


def test_command_queue_is_bounded_in_bytes_and_keeps_the_newest():
    # regression: the queue took 8 messages of up to 4 KB before the 1 KB check ran, and a flood left no room
    # for what the server sent after it
    tmp = tempfile.mkdtemp(prefix="bdmeter-queue-")
    try:
        cmds = Commands(_Terminal(tmp))
        for _ in range(20):
            cmds.incoming("cmd", b"x" * 4000)
        cmds.incoming("cmd", b"last")
        held = sum(len(m) for m in cmds._queue if m is not None)
        assert len(cmds._queue) == 8 and held <= 8 * MAX_ENVELOPE and cmds._queue[-1] == b"last"
        assert cmds.dropped == 13
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
