"""Command authentication: the documented worked example, and every refusal."""

import json

from portable import raises

from firmware.auth import Auth, Refused, hmac_sha256, sign

KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
TID = "861234567890123"
BODY = '{"id":"q-0001","op":"query","args":{"what":["address","position","energy"]},"ts":1795430400,' \
       '"nonce":"5f1c9a0e7b3d4a21"}'
NOW = 1795430400


def _env(body, key=KEY, tid=TID):
    return json.dumps({"body": body, "mac": sign(key, tid, body)}).encode()


def test_hmac_rfc4231_case_2():
    from binascii import hexlify

    mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert hexlify(mac) == b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_worked_example_of_protocol_doc():
    assert sign(KEY, TID, BODY) == "3a197dd6aa74c5af38cc72afe7cff5a2e827ee9aae3d3a7c723ab645136d188e"
    body = Auth(TID, KEY).check(_env(BODY), NOW, True)
    assert body["op"] == "query" and body["id"] == "q-0001"


def _refused(auth, payload, now=NOW, trusted=True):
    return raises(Refused, auth.check, payload, now, trusted)


def test_refusals():
    a = Auth(TID, KEY)
    assert _refused(a, b"x" * 2000).code == "too_large"
    assert _refused(a, b"not json").code == "malformed"
    assert _refused(a, b'{"body": 1, "mac": "00"}').code == "malformed"
    forged = json.dumps({"body": BODY, "mac": "0" * 64}).encode()
    assert _refused(a, forged).code == "bad_mac"
    assert _refused(a, _env(BODY, tid="other")).code == "bad_mac"  # signed for another terminal
    assert _refused(a, _env(BODY), now=NOW + 301).code == "stale"
    assert _refused(a, _env(BODY), trusted=False).code == "stale"
    a.check(_env(BODY), NOW, True)
    e = _refused(a, _env(BODY))
    assert e.code == "replay" and e.id == "q-0001"
    assert a.refused == 8


def test_authentic_but_malformed_body():
    a = Auth(TID, KEY)
    e = _refused(a, _env('{"id":"x1","op":"query","ts":"late","nonce":"12345678"}'))
    assert e.code == "malformed" and e.id == "x1"


def test_no_key_refuses_everything():
    assert _refused(Auth(TID, ""), _env(BODY)).code == "bad_mac"


def test_nonces_survive_reboot():
    from portable import rmtree, scratch

    d = scratch("nonces")
    Auth(TID, KEY, state_path=d + "/nonces.json").check(_env(BODY), NOW, True)
    again = Auth(TID, KEY, state_path=d + "/nonces.json")
    assert _refused(again, _env(BODY)).code == "replay"
    rmtree(d)


def test_evicted_nonce_cannot_be_replayed():
    # regression (found by fuzzing): with the nonce store full, an old-stamped command evicted itself
    a = Auth(TID, KEY)
    for i in range(256):
        body = '{"id":"n%d","op":"status","args":{},"ts":%d,"nonce":"nonce-%06d"}' % (i, NOW + 1, i)
        a.check(_env(body), NOW, True)
    old = '{"id":"old","op":"status","args":{},"ts":%d,"nonce":"old-nonce-1"}' % (NOW - 10)
    try:
        a.check(_env(old), NOW, True)  # accepted once, or already below the replay floor
    except Refused as e:
        assert e.code == "replay"
    assert _refused(a, _env(old)).code == "replay"
