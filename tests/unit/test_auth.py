"""Command authentication: the documented worked example, and every refusal."""

import json

from portable import raises

from firmware.auth import NONCES, Auth, Nonces, Refused, hmac_sha256, sign

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
    Auth(TID, KEY, state_path=d + "/nonces.bin").check(_env(BODY), NOW, True)
    again = Auth(TID, KEY, state_path=d + "/nonces.bin")
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


def _cmd(i, ts, nonce=None):
    return _env('{"id":"c%d","op":"status","args":{},"ts":%d,"nonce":"%s"}' % (i, ts, nonce or "nonce-%06d" % i))


def test_pruned_nonce_raises_floor():
    # regression: a nonce pruned out of the window was forgotten without a trace, so with the clock moved
    # back the captured command ran again
    a = Auth(TID, KEY)
    a.check(_cmd(1, NOW), NOW, True)
    a.check(_cmd(2, NOW + 700), NOW + 700, True)  # prunes the first (older than twice the skew)
    assert len(a.nonces) == 1 and a.nonces.floor == NOW
    assert _refused(a, _cmd(1, NOW), now=NOW).code == "replay"  # the clock moved back: still a replay


def test_many_fresh_commands_in_one_second_are_not_replays():
    # regression: the 257th command stamped in the same second evicted one of the same second, raised the
    # floor to that second and was itself refused as a replay
    a = Auth(TID, KEY)
    for i in range(300):
        a.check(_cmd(i, NOW), NOW, True)
    assert len(a.nonces) == 300
    for i in range(300):
        assert _refused(a, _cmd(i, NOW)).code == "replay"


def test_full_store_evicts_only_older_and_says_busy():
    n = Nonces(size=4)
    for i in range(4):
        assert n.add("nonce-%d" % i, 100 + i)
    assert n.add("nonce-4", 105)  # evicts ts 100: the floor rises to it
    assert n.floor == 100 and n.seen("nonce-0", 100) and n.seen("anything", 99)
    m = Nonces(size=2)
    assert m.add("aaaaaaaa", 100) and m.add("bbbbbbbb", 100)
    assert not m.add("cccccccc", 100)  # only same-second nonces to give up: refused, never forgotten
    assert not m.seen("cccccccc", 100) and m.floor == 0


def test_uppercase_mac_is_malformed():
    env = json.loads(_env(BODY))
    env["mac"] = env["mac"].upper()
    assert _refused(Auth(TID, KEY), json.dumps(env).encode()).code == "malformed"


def test_store_is_bounded_in_bytes():
    n = Nonces()
    assert len(n._dig) + len(n._ts) * 4 == NONCES * 12
    for i in range(NONCES + 50):
        n.add("x" * 56 + "%08d" % i, NOW + i)  # 64-character nonces cost 12 bytes each like any other
    assert len(n) == NONCES and n.floor == NOW + 49


def test_store_saves_by_appending_and_compacts():
    import os

    from portable import rmtree, scratch

    d = scratch("nonce-append")
    path = d + "/nonces.bin"
    a = Auth(TID, KEY, state_path=path)
    a.check(_cmd(1, NOW), NOW, True)
    assert os.stat(path)[6] == 12
    a.check(_cmd(2, NOW), NOW, True)
    assert os.stat(path)[6] == 24  # one record appended per command, not the whole list rewritten
    with open(path, "ab") as f:
        f.write(b"\x01\x02\x03")  # a power cut in the middle of an append
    b = Auth(TID, KEY, state_path=path)
    assert os.stat(path)[6] == 36  # compacted at load: the torn record dropped, the floor and both nonces kept
    assert _refused(b, _cmd(1, NOW)).code == "replay" and _refused(b, _cmd(2, NOW)).code == "replay"
    small = Nonces(path=d + "/small.bin", size=4)
    for i in range(20):
        small.add("nonce-%04d" % i, NOW + i)
    assert os.stat(d + "/small.bin")[6] <= 12 * (2 * 4 + 1)  # compacted: never more than twice the ring
    again = Nonces(path=d + "/small.bin", size=4)
    assert again.floor == small.floor == NOW + 15 and again.seen("nonce-0019", NOW + 19)
    assert not again.seen("nonce-9999", NOW + 19)
    rmtree(d)


def test_old_json_store_becomes_the_floor():
    import os

    from portable import rmtree, scratch

    d = scratch("nonce-json")
    with open(d + "/nonces.json", "w") as f:
        json.dump([["", NOW - 900], ["5f1c9a0e7b3d4a21", NOW]], f)
    a = Auth(TID, KEY, state_path=d + "/nonces.bin")
    assert a.nonces.floor == NOW and _refused(a, _env(BODY)).code == "replay"
    assert "nonces.json" not in os.listdir(d)
    rmtree(d)
