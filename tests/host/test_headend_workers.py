"""Running a fleet store over time, on SQLite and on PostgreSQL: several head-end workers writing at once (as
`run --share` workers do) lose no transaction to a deadlock; retention deletes old rows and keeps record keys."""

import threading

from tools.headend import Ingest, synth
from tools.headend.pgstore import open_store

T0 = 1795478400


def _batch(order, base_seq):
    """Energy records of ten terminals, in the given order of terminals (workers see them in different orders)."""
    return [("bdmeter/86123456780%04d/energy" % k,
             synth.energy(base_seq + k * 1000, T0 + base_seq, "0000720%05d" % k, 10.0 + base_seq, inc="%08x" % (k + 1)),
             False) for k in order]


def test_concurrent_workers_store_everything(tmp_path, backend):
    target = backend.target(tmp_path / "workers.db")
    open_store(target).close()
    errors, stores = [], []

    def worker(w):
        store = open_store(target)
        stores.append(store)
        ing = Ingest(store)
        order = list(range(10)) if w % 2 == 0 else list(range(9, -1, -1))
        try:
            for i in range(30):
                ing.handle_many(_batch(order, 1 + w * 100 + i))
        except Exception as e:  # a deadlock would surface here and lose the batch
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    check = open_store(target)
    assert check.count("readings") == 4 * 30 * 10
    assert check.counters()["stored"] == 4 * 30 * 10
    check.close()
    for s in stores:
        s.close()


def test_prune_keeps_what_is_recent_and_the_record_keys(tmp_path, backend, capsys):
    from tools.headend import cli
    from tools.headend.retention import prune

    target = backend.target(tmp_path / "prune.db")
    store = open_store(target)
    ing = Ingest(store)
    t = "bdmeter/861234567890123/"
    day = 86400
    now = T0 + 200 * day
    for k, age in enumerate((150, 100, 10)):  # days before now
        ing.handle(t + "heartbeat", synth.heartbeat(now - age * day, 100), now=now - age * day)
        ing.handle(t + "energy", synth.energy(k + 1, now - age * day, "000072007201", 10.0 + k, inc="0000beef"),
                   now=now - age * day)
    assert prune(store, {"heartbeats": 90, "readings": None}, now=now) == {"heartbeats": 2}
    assert store.count("heartbeats") == 1 and store.count("readings") == 3
    assert prune(store, {"readings": 120}, now=now) == {"readings": 1}
    # the pruned record's key stays: its redelivery is a duplicate, not a new row
    assert ing.handle(t + "energy", synth.energy(1, now - 150 * day, "000072007201", 10.0, inc="0000beef"),
                      now=now) == "duplicate"
    assert store.count("readings") == 2
    store.close()
    assert cli.main(["prune", "--db", target, "--readings-days", "0"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert cli.main(["prune", "--db", target]) == 0
    assert capsys.readouterr().out.startswith("deleted: heartbeats ")
