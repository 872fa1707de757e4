"""Several head-end workers writing to one database at once (as `run --share` workers do): no transaction is
lost to a deadlock, on SQLite and on PostgreSQL."""

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
