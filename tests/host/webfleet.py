"""A small demo-like fleet in a head-end database, for the dashboard's tests (no broker needed)."""

import time

from tools.headend import Ingest, synth, users
from tools.headend.pgstore import open_store

KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
PASSWORDS = {"ada": "ada-operator-pw", "vic": "vic-viewer-pw", "root": "root-admin-pw"}
ROLES = {"ada": "operator", "vic": "viewer", "root": "admin"}
INC = "00c0ffee"


def terminals(now):
    """(tid, meters, lat, lon, state) of five terminals over Hohhot: 3 online, 1 silent, 1 offline."""
    out = []
    for i in range(5):
        tid = "8612345678901%02d" % i
        meters = ["%012d" % (72007201 + 10 * i + k) for k in range(2 if i % 3 == 2 else 1)]
        state = "online" if i < 3 else ("silent" if i == 3 else "offline")
        out.append((tid, meters, 40.84 + 0.01 * (i - 2), 111.75 + 0.012 * ((i * 7) % 5 - 2), state))
    return out


def build(path, now=None, hours=30, key=KEY):
    """Fill the database at `path`: registrations, hourly readings over `hours` hours, heartbeats, events."""
    now = time.time() if now is None else now
    t0 = int(now - hours * 3600)
    store = open_store(str(path))
    ing = Ingest(store, heartbeat_s=60)
    users.ensure(store)
    for name, role in ROLES.items():
        users.add_user(store, name, role, PASSWORDS[name])
    for tid, meters, lat, lon, state in terminals(now):
        t = "bdmeter/%s/" % tid
        ing.handle(t + "status", synth.status_online(t0), now=t0)
        ing.handle(t + "register", synth.register(1, t0, meters, lat, lon, imei=tid, inc=INC), now=t0)
        seq = 2
        for h in range(hours + 1):
            for k, m in enumerate(meters):
                fwd = 1000 + 100 * k + (1.5 + 0.1 * int(tid[-1])) * h
                ing.handle(t + "energy", synth.energy(seq, t0 + 3600 * h, m, fwd, inc=INC), now=t0 + 3600 * h)
                seq += 1
        if tid.endswith("01"):
            ing.handle(t + "event", synth.event(seq, t0 + 7200, "relocation",
                                                {"from": {"lat": lat, "lon": lon}, "to": {"lat": lat, "lon": lon},
                                                 "m": 250}, inc=INC), now=t0 + 7200)
            ing.handle(t + "event", synth.event(seq + 1, t0 + 7300, "outbox_overflow", {"dropped": 3, "total": 3},
                                                inc=INC), now=t0 + 7300)
            ing.handle(t + "event", synth.event(seq + 2, t0 + 7400, "clock_refused", {"src": "gnss", "delta_s": 10800},
                                                inc=INC), now=t0 + 7400)
        last_hb = now - 30 if state == "online" else now - 3600
        ing.handle(t + "heartbeat", synth.heartbeat(int(last_hb - 60), 1000), now=last_hb - 60)
        ing.handle(t + "heartbeat", synth.heartbeat(int(last_hb), 1060), now=last_hb)
        if state == "offline":
            ing.handle(t + "status", b'{"v":2,"state":"offline"}', now=last_hb + 1)
        if key:
            store.set_key(tid, key)
    ing.check_silent(now)
    store.close()
    return path
