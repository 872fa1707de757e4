"""Message bodies: compact, versioned, and small enough for the daily data budget."""

import json

from firmware import payloads


def test_short_heartbeat_stays_small():
    # regression: full heartbeats every 5 minutes cost ~150 KB/day; the short form keeps the terminal < 64 KB/day
    body = payloads.dumps(payloads.heartbeat(1795430700, "gnss", 31536000, 31, True, 1000))
    assert len(body) <= 100, body
    assert json.loads(body) == {"v": payloads.V, "ts": 1795430700, "tsrc": "gnss", "up": 31536000, "csq": 31,
                                "fix": True, "outbox": 1000}


def test_full_heartbeat_adds_health():
    full = {"nsat": 9, "heap": 48128, "heap_peak": 61440, "reset": "power", "err": {}}
    body = json.loads(payloads.dumps(payloads.heartbeat(1, "rtc", 2, None, False, 0, full)))
    assert body["err"] == {} and body["reset"] == "power" and body["csq"] is None


def test_energy_and_resp_shapes():
    e = payloads.energy(1795430415, "gnss", "000072007201", {"fwd": 1234.56}, {"p": 0.41})
    assert e == {"v": payloads.V, "ts": 1795430415, "tsrc": "gnss", "meter": "000072007201", "kwh": {"fwd": 1234.56},
                 "inst": {"p": 0.41}}
    ok = json.loads(payloads.resp("q1", 5, "net", {"a": 1}))
    assert ok["ok"] is True and ok["result"] == {"a": 1} and "error" not in ok
    bad = json.loads(payloads.resp(None, 5, "net", error="bad_mac"))
    assert bad["ok"] is False and bad["id"] is None and bad["error"] == "bad_mac"
    assert " " not in payloads.dumps({"a": [1, 2]})


def test_energy_registers_are_exact_decimals():
    # regression: with 32-bit floats (boards) 123456.78 kWh would be sent as 123456.8
    c = payloads.Centi(12345678)
    text = payloads.dumps({"kwh": {"fwd": c, "comb": payloads.Centi(-5), "rev": payloads.Centi(0)}})
    for part in ('"fwd":123456.78', '"comb":-0.05', '"rev":0.00'):  # dict order differs between runtimes
        assert part in text, text
    assert payloads.dumps([payloads.Centi(99999999)]) == "[999999.99]"
    assert float(c) == 123456.78
    obj = {"s": 'a"b', "n": None, "t": True, "f": 1.5, "l": [1, "x"]}
    assert json.loads(payloads.dumps(obj)) == obj


def test_fixed_decimals_keep_the_meters_digits():
    # regression: inst values were floats and went out as e.g. "p":0.8957000000000001
    cases = ((8957, 4, "0.8957"), (-8957, 4, "-0.8957"), (2298, 1, "229.8"), (500, 3, "0.500"), (-5, 3, "-0.005"),
             (0, 3, "0.000"), (5001, 2, "50.01"), (230, 0, "230"), (-1, 0, "-1"), (99999999, 2, "999999.99"))
    for n, places, text in cases:
        assert payloads.Fixed(n, places).text() == text, (n, places)
        assert payloads.dumps([payloads.Fixed(n, places)]) == "[%s]" % text
    assert payloads.Fixed(5, 1) == payloads.Fixed(500, 3) and payloads.Fixed(5, 1) != payloads.Fixed(5, 2)
    assert payloads.Centi(12345) == payloads.Fixed(12345, 2) and payloads.Fixed(1, 0) != 1
    assert payloads.fixed(([1, 2], 2)) == [payloads.Fixed(1, 2), payloads.Fixed(2, 2)]
    assert float(payloads.Fixed(8957, 4)) == 0.8957
    inst = {"v": [payloads.Fixed(2298, 1)], "i": [payloads.Fixed(-1234, 3)], "p": payloads.Fixed(8957, 4),
            "pf": payloads.Fixed(980, 3), "f": payloads.Fixed(5001, 2)}
    text = payloads.dumps(payloads.energy(1, "gnss", "000072007201", {"fwd": payloads.Centi(1)}, inst))
    for part in ('"v":[229.8]', '"i":[-1.234]', '"p":0.8957', '"pf":0.980', '"f":50.01', '"fwd":0.01'):
        assert part in text, text
    assert json.loads(text)["inst"]["p"] == 0.8957


def test_contract_version_2():
    # records carry the outbox incarnation (`inc`) since version 2
    assert payloads.V == 2
    assert json.loads(payloads.WILL) == {"v": 2, "state": "offline"}
    assert json.loads(payloads.status_online(1, "net"))["v"] == 2
