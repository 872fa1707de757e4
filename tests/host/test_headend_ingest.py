"""Head-end in-process: command signing, contract validation, exactly-once records, silent detection."""

import hashlib
import hmac
import json

import pytest

from tools.headend import Ingest, cli, contract, sign, synth
from tools.headend.pgstore import open_store

TID = "861234567890123"
KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
BODY = ('{"id":"q-0001","op":"query","args":{"what":["address","position","energy"]},"ts":1795430400,'
        '"nonce":"5f1c9a0e7b3d4a21"}')
T = "bdmeter/%s/" % TID

# the examples of docs/PROTOCOL.md, verbatim
EXAMPLES = {
    "status": '{"v":1,"state":"online","fw":"0.1.0","ts":1795430400,"tsrc":"gnss"}',
    "register": '{"v":1,"seq":41,"ts":1795430400,"tsrc":"gnss","why":"connect","meters":["000072007201"],'
                '"pos":{"lat":40.842511,"lon":111.749032,"alt":1065.2,"hdop":0.9,"nsat":9,"n":24},'
                '"imei":"861234567890123","iccid":"89860012345678901234","fw":"0.1.0","csq":23}',
    "energy": '{"v":1,"seq":42,"ts":1795430415,"tsrc":"gnss","meter":"000072007201",'
              '"kwh":{"fwd":1234.56,"t1":300.12,"t2":400.2,"t3":334.24,"t4":200.0,"rev":1.5,"comb":1233.06},'
              '"inst":{"v":[229.8,230.1,230.4],"i":[1.234,0.5,0.0],"p":0.4123,"pf":0.98,"f":50.01}}',
    "heartbeat": '{"v":1,"ts":1795430700,"tsrc":"gnss","up":3600,"csq":23,"fix":true,"nsat":9,'
                 '"outbox":0,"heap":48128,"heap_peak":61440,"reset":"power","err":{"meter_timeouts":0,"meter_corrupt":0,'
                 '"meter_abnormal":0,"nmea_bad":0,"gnss_rejected":3,"at_timeouts":0,"mqtt_reconnects":1,'
                 '"outbox_dropped":0,"cmd_refused":0,"ladder":{"socket":1,"pdp":0,"cfun":0,"power":0,"mcu":0}}}',
    "event": '{"v":1,"seq":43,"ts":1795430800,"tsrc":"gnss","kind":"relocation","data":{"from":'
             '{"lat":40.842511,"lon":111.749032},"to":{"lat":40.851,"lon":111.76},"m":1312}}',
    "resp": '{"v":1,"id":"q-0001","ok":true,"ts":1795430401,"tsrc":"gnss","result":{"address":["000072007201"]}}',
}


@pytest.fixture
def store(tmp_path, backend):
    s = backend.open(tmp_path / "fleet.db")
    yield s
    s.close()


def test_worked_example_mac():
    assert sign.mac(KEY, TID, BODY) == "3a197dd6aa74c5af38cc72afe7cff5a2e827ee9aae3d3a7c723ab645136d188e"
    # the PROTOCOL.md recipe, independently of the module
    expect = hmac.new(bytes.fromhex(KEY), b"bdmeter-cmd-v1\n" + TID.encode() + b"\n" + BODY.encode(),
                      hashlib.sha256).hexdigest()
    assert sign.mac(bytes.fromhex(KEY), TID, BODY) == expect


def test_command_envelope_round_trip():
    req_id, env = sign.command(KEY, TID, "query", {"what": ["address", "position", "energy"]},
                               req_id="q-0001", ts=1795430400, nonce="5f1c9a0e7b3d4a21")
    assert req_id == "q-0001"
    assert json.loads(env) == {"body": BODY, "mac": "3a197dd6aa74c5af38cc72afe7cff5a2e827ee9aae3d3a7c723ab645136d188e"}
    assert sign.verify(KEY, TID, env)["op"] == "query"
    assert sign.verify(KEY, "861234567890124", env) is None  # bound to the terminal id
    assert sign.verify("ff" * 32, TID, env) is None
    rid, env2 = sign.command(KEY, TID, "read")
    body = json.loads(json.loads(env2)["body"])
    assert list(body) == ["id", "op", "args", "ts", "nonce"] and body["id"] == rid and len(body["nonce"]) == 16
    with pytest.raises(ValueError):
        sign.command("0011", TID, "read")  # key shorter than 16 bytes
    with pytest.raises(ValueError):
        sign.command(KEY, TID, "format_flash")
    with pytest.raises(ValueError):
        sign.command(KEY, "bad/tid", "read")
    with pytest.raises(ValueError):
        sign.command(KEY, TID, "config.set", {"set": {"x": "y" * 1100}})


def test_contract_accepts_the_documented_examples():
    for leaf, text in EXAMPLES.items():
        tid, got_leaf, obj = contract.parse(T + leaf, text.encode(), "bdmeter")
        assert (tid, got_leaf) == (TID, leaf) and obj["v"] == 1
    for text in ('{"v":1,"state":"offline"}', '{"v":1,"state":"offline","why":"shutdown"}',
                 '{"v":1,"id":null,"ok":false,"ts":5,"tsrc":"none","error":"malformed"}'):
        leaf = "status" if "state" in text else "resp"
        contract.parse(T + leaf, text.encode(), "bdmeter")
    # a register before the first fix, an energy with registers refused, a minimal heartbeat
    contract.parse(T + "register", synth.register(1, 100, ["000072007201"], None, None, tsrc="none"), "bdmeter")
    contract.parse(T + "energy", b'{"v":1,"seq":2,"ts":9,"tsrc":"rtc","meter":"000072007201","kwh":{}}', "bdmeter")
    contract.parse(T + "heartbeat", b'{"v":1,"ts":9,"tsrc":"net","up":9}', "bdmeter")
    assert contract.parse(T + "cmd", b"anything", "bdmeter")[2] is None


def _mutate(leaf, **changes):
    obj = json.loads(EXAMPLES[leaf])
    for k, v in changes.items():
        if v is KeyError:
            del obj[k]
        else:
            obj[k] = v
    return json.dumps(obj).encode()


BAD = [
    ("energy", b"{not json"),
    ("energy", b"\xff\xfe"),
    ("energy", b"[1,2]"),
    ("energy", _mutate("energy", v=KeyError)),
    ("energy", _mutate("energy", v=2)),
    ("energy", _mutate("energy", seq=KeyError)),
    ("energy", _mutate("energy", seq="42")),
    ("energy", _mutate("energy", seq=True)),
    ("energy", _mutate("energy", seq=0)),
    ("energy", _mutate("energy", ts="2026-11-24")),
    ("energy", _mutate("energy", tsrc="gps")),
    ("energy", _mutate("energy", meter="00007200720")),
    ("energy", _mutate("energy", kwh={"fwd": "1234.56"})),
    ("energy", _mutate("energy", kwh=[1, 2])),
    ("energy", b'{"v":1,"seq":1,"ts":1,"tsrc":"gnss","meter":"000072007201","kwh":{"fwd":NaN}}'),
    ("energy", _mutate("energy", inst={"v": [230, 231, 229, 228]})),
    ("register", _mutate("register", meters="000072007201")),
    ("register", _mutate("register", pos={"lat": 91.0, "lon": 111.7})),
    ("register", _mutate("register", pos={"lon": 111.7})),
    ("register", _mutate("register", why=7)),
    ("register", _mutate("register", imei=KeyError)),
    ("heartbeat", _mutate("heartbeat", up=KeyError)),
    ("heartbeat", _mutate("heartbeat", fix="yes")),
    ("heartbeat", _mutate("heartbeat", err={"ladder": {"socket": [1]}})),
    ("event", _mutate("event", data=KeyError)),
    ("event", _mutate("event", kind="meter_offline", data={})),
    ("status", b'{"v":1,"state":"sleeping"}'),
    ("status", b'{"v":1,"state":"online"}'),
    ("resp", _mutate("resp", ok=KeyError)),
    ("resp", _mutate("resp", ok=True, result=KeyError)),
]


@pytest.mark.parametrize("leaf, payload", BAD)
def test_contract_rejects(leaf, payload):
    with pytest.raises(contract.ContractError):
        contract.parse(T + leaf, payload, "bdmeter")


@pytest.mark.parametrize("topic", ["other/%s/energy" % TID, T + "energy/extra", T + "power",
                                   "bdmeter/86123+4/energy", "bdmeter//energy", "bdmeter/%s" % TID])
def test_contract_rejects_topics(topic):
    with pytest.raises(contract.ContractError):
        contract.parse(topic, EXAMPLES["energy"].encode(), "bdmeter")


def test_informative_deviations_are_kept_and_counted(store, capsys):
    warnings = []
    contract.parse(T + "register", _mutate("register", why="maintenance"), "bdmeter", warnings)
    assert warnings == ["register.why: undocumented 'maintenance'"]
    ing = Ingest(store)
    for seq in (50, 51):
        assert ing.handle(T + "register", _mutate("register", why="maintenance", seq=seq)) == "stored"
    hb = json.loads(EXAMPLES["heartbeat"])
    hb["err"]["ladder"]["fixed_by"] = None  # a note among the counters
    assert ing.handle(T + "heartbeat", json.dumps(hb).encode()) == "stored"
    assert store.count("registrations") == 2
    assert store.counters()["warning register.why: undocumented 'maintenance'"] == 2
    assert cli.main(["status", "--db", store.path]) == 0
    assert "accepted with a deviation (2): register.why: undocumented 'maintenance'" in capsys.readouterr().out


def test_invalid_messages_are_counted_and_kept_aside(store):
    ing = Ingest(store)
    for leaf, payload in BAD:
        assert ing.handle(T + leaf, payload, now=10.0) == "invalid"
    assert ing.handle("bdmeter/x/y/z", b"{}", now=10.0) == "invalid"
    assert ing.handle(T + "energy", EXAMPLES["energy"].encode(), now=11.0) == "stored"
    assert store.counters()["invalid"] == len(BAD) + 1
    assert store.count("rejects") == len(BAD) + 1 and store.count("readings") == 1
    reasons = [r["reason"] for r in store.query("SELECT reason FROM rejects ORDER BY id")]
    assert reasons[0].startswith("json") and reasons[-1].startswith("topic")


def test_duplicates_are_stored_once(store):
    ing = Ingest(store)
    first = synth.energy(7, 1000, "000072007201", 10.0)
    assert [ing.handle(T + "energy", p) for p in (first, first)] == ["stored", "duplicate"]
    assert ing.handle(T + "event", synth.event(8, 1001, "reboot", {"cause": "power"})) == "stored"
    assert ing.handle(T + "event", synth.event(8, 1001, "reboot", {"cause": "power"})) == "duplicate"
    assert ing.handle("bdmeter/861234567890999/energy", first) == "stored"  # another terminal, same seq
    # an integral number in a redelivery is the same content as the stored float
    again = json.loads(first)
    again["kwh"]["rev"] = 0
    assert ing.handle(T + "energy", json.dumps(again).encode()) == "duplicate"
    assert store.count("readings") == 2 and store.count("events") == 1 and store.count("registrations") == 0
    assert store.query("SELECT fwd FROM readings WHERE tid = ?", (TID,))[0]["fwd"] == 10.0
    c = store.counters()
    assert c["stored"] == 3 and c["duplicate"] == 3 and "conflict" not in c


def test_registration_view_follows_the_newest(store):
    ing = Ingest(store)
    ing.handle(T + "register", synth.register(5, 1000, ["000072007201"], 40.85, 111.75), now=1.0)
    ing.handle(T + "register", synth.register(3, 900, ["000072007299"], 40.80, 111.70), now=2.0)  # late replay
    row = store.fleet(now=3.0)[0]
    assert row["meters"] == ["000072007201"] and (row["lat"], row["lon"]) == (40.85, 111.75)
    assert store.count("registrations") == 2
    ing.handle(T + "register", synth.register(6, 1100, ["000072007201"], None, None, why="boot"), now=4.0)
    assert (store.fleet(now=5.0)[0]["lat"]) == 40.85  # no fix yet: the last known position stays


def test_heartbeat_period_is_learned_and_overdue_means_silent(store):
    ing = Ingest(store)
    ing.handle(T + "status", EXAMPLES["status"].encode(), now=0.0)
    for t in (0.0, 10.0, 30.0, 40.0):  # the beat at 20 s was lost
        ing.handle(T + "heartbeat", synth.heartbeat(1000 + int(t), int(t)), now=t)
    assert store.fleet(now=40.0)[0]["hb_interval_s"] == 10.0
    assert ing.check_silent(now=64.0) == []
    assert store.fleet(now=66.0)[0]["state"] == "silent"  # the status view sees it before the check runs
    assert ing.check_silent(now=66.0) == [TID]
    assert ing.check_silent(now=70.0) == []
    ing.handle(T + "heartbeat", synth.heartbeat(1080, 80), now=80.0)
    assert store.fleet(now=81.0)[0]["state"] == "online"
    ing.handle(T + "status", b'{"v":1,"state":"offline"}', now=90.0)
    assert store.transitions(TID) == [("online", "status"), ("silent", "heartbeat_overdue"),
                                      ("online", "heartbeat"), ("offline", "will")]
    assert ing.check_silent(now=500.0) == []  # offline is not silent


def test_longer_heartbeat_period_is_learned_after_three_beats(store):
    ing = Ingest(store)
    for t in (0, 5, 10, 70, 130, 190):
        ing.handle(T + "heartbeat", synth.heartbeat(t, t), now=float(t))
    assert store.fleet(now=190.0)[0]["hb_interval_s"] == 60.0


def test_given_heartbeat_period_applies_before_one_is_learned(store):
    ing = Ingest(store, heartbeat_s=4)
    ing.handle(T + "status", EXAMPLES["status"].encode(), now=100.0)
    assert ing.check_silent(now=109.0) == []
    assert ing.check_silent(now=111.0) == [TID]
    assert Ingest(open_store(store.path)).check_silent(now=1e9) == []  # without one, silence needs two beats


def test_retained_status_replay_does_not_flap(store):
    ing = Ingest(store)
    online = EXAMPLES["status"].encode()
    ing.handle(T + "status", online, now=0.0, retained=True)
    ing.handle(T + "heartbeat", synth.heartbeat(1, 1), now=1.0)
    ing.handle(T + "heartbeat", synth.heartbeat(2, 2), now=2.0)
    ing.check_silent(now=10.0)
    ing.handle(T + "status", online, now=11.0, retained=True)  # a head-end restart replays it
    assert store.fleet(now=11.0)[0]["state"] == "silent"
    ing.handle(T + "status", online, now=12.0)  # a fresh one (reconnect) counts
    assert store.fleet(now=12.0)[0]["state"] == "online"
    assert [s for s, _ in store.transitions(TID)] == ["online", "silent", "online"]


def test_status_command_prints_the_fleet(store, capsys):
    ing = Ingest(store)
    ing.handle(T + "status", EXAMPLES["status"].encode())
    ing.handle(T + "register", EXAMPLES["register"].encode())
    ing.handle(T + "energy", EXAMPLES["energy"].encode())
    ing.handle("bdmeter/861234567890999/status", b'{"v":1,"state":"offline"}')
    assert cli.main(["status", "--db", store.path]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith(TID))
    for cell in ("000072007201", "40.84251,111.74903", "1234.56", "online"):
        assert cell in line
    assert "offline" in next(x for x in out.splitlines() if x.startswith("861234567890999"))
    assert "records stored 2" in out
    assert cli.main(["status", "--db", store.path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["tid"] == TID


def test_keys_file_and_table(tmp_path, store):
    (tmp_path / "keys.json").write_text(json.dumps({TID: KEY}))
    (tmp_path / "keys.txt").write_text("# tid key\n%s %s\n" % (TID, KEY))
    assert cli.load_keys(tmp_path / "keys.json") == {TID: KEY}
    assert cli.load_keys(tmp_path / "keys.txt") == {TID: KEY}
    assert cli.main(["key", "--db", store.path, TID, KEY.upper()]) == 0
    assert store.key(TID) == KEY
    assert cli.main(["key", "--db", store.path, TID, "00ff"]) == 2


def test_heartbeat_fields_are_kept(store):
    Ingest(store).handle(T + "heartbeat", EXAMPLES["heartbeat"].encode(), now=5.0)
    row = store.query("SELECT * FROM heartbeats")[0]
    assert (row["up"], row["heap"], row["heap_peak"], row["fix"], row["reset"]) == (3600, 48128, 61440, 1, "power")
    assert json.loads(row["err"])["ladder"]["socket"] == 1
