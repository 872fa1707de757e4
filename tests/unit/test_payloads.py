"""Message bodies: compact, versioned, and small enough for the daily data budget."""

import json

from firmware import payloads


def test_short_heartbeat_stays_small():
    # regression: full heartbeats every 5 minutes cost ~150 KB/day; the short form keeps the terminal < 64 KB/day
    body = payloads.dumps(payloads.heartbeat(1795430700, "gnss", 31536000, 31, True, 1000))
    assert len(body) <= 100, body
    assert json.loads(body) == {"v": 1, "ts": 1795430700, "tsrc": "gnss", "up": 31536000, "csq": 31, "fix": True,
                                "outbox": 1000}


def test_full_heartbeat_adds_health():
    full = {"nsat": 9, "heap": 48128, "heap_peak": 61440, "reset": "power", "err": {}}
    body = json.loads(payloads.dumps(payloads.heartbeat(1, "rtc", 2, None, False, 0, full)))
    assert body["err"] == {} and body["reset"] == "power" and body["csq"] is None


def test_energy_and_resp_shapes():
    e = payloads.energy(1795430415, "gnss", "000072007201", {"fwd": 1234.56}, {"p": 0.41})
    assert e == {"v": 1, "ts": 1795430415, "tsrc": "gnss", "meter": "000072007201", "kwh": {"fwd": 1234.56},
                 "inst": {"p": 0.41}}
    ok = json.loads(payloads.resp("q1", 5, "net", {"a": 1}))
    assert ok["ok"] is True and ok["result"] == {"a": 1} and "error" not in ok
    bad = json.loads(payloads.resp(None, 5, "net", error="bad_mac"))
    assert bad["ok"] is False and bad["id"] is None and bad["error"] == "bad_mac"
    assert " " not in payloads.dumps({"a": [1, 2]})
