"""Head-end ingest throughput: in-process Ingest.handle, and end to end through a real mosquitto on loopback;
the time of an energy report over the stored readings."""

import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt

TERMINALS = 50
MESSAGES = 20000
PUBLISHERS = 5
T0 = 1795478400


def _messages():
    """(topic, payload) of MESSAGES energy records (contract version 2) spread over TERMINALS terminals, seq per
    terminal and outbox incarnation."""
    from tools.headend import synth

    per = MESSAGES // TERMINALS
    out = []
    for k in range(TERMINALS):
        tid = "8612345678%05d" % k
        for seq in range(1, per + 1):
            payload = synth.energy(seq, T0 + 60 * seq, "0000720%05d" % k, 10 + seq * 0.01, inc="%08x" % (k + 1))
            out.append(("bdmeter/%s/energy" % tid, payload))
    return out


def _in_process(msgs, tmp):
    from tools.headend import Ingest, Store

    store = Store(Path(tmp) / "inproc.db")
    ing = Ingest(store)
    half = len(msgs) // 2
    t0 = time.perf_counter()
    for topic, payload in msgs[:half]:
        ing.handle(topic, payload)
    dt = time.perf_counter() - t0
    # the service's way: batches of up to 200 in one transaction
    tb = time.perf_counter()
    for i in range(half, len(msgs), 200):
        ing.handle_many([(t, p, False) for t, p in msgs[i:i + 200]])
    dt_batch = time.perf_counter() - tb
    # a second pass: every record is a redelivery, the cost of de-duplication alone
    t1 = time.perf_counter()
    for topic, payload in msgs[:5000]:
        ing.handle(topic, payload)
    dt_dup = time.perf_counter() - t1
    assert store.count("readings") == len(msgs)
    # the energy report over all of it (per meter: the register interpolated at both ends)
    from tools.headend import report, synth

    per = len(msgs) // TERMINALS
    for k in range(TERMINALS):
        ing.handle("bdmeter/8612345678%05d/register" % k,
                   synth.register(per + 1, T0, ["0000720%05d" % k], 40.8 + k * 0.002, 111.7, inc="%08x" % (k + 1)))
    tr = time.perf_counter()
    rep = report.compute(store, T0 + 3000, T0 + 60 * (len(msgs) // TERMINALS) - 3000, grid_deg=0.02)
    dt_report = time.perf_counter() - tr
    assert len(rep["meters"]) == TERMINALS
    store.close()
    return half / dt, (len(msgs) - half) / dt_batch, dt_dup / 5000 * 1e6, dt_report * 1000


def _mosquitto(tmp):
    from tools import procs as h

    port = h.free_port()
    conf = Path(tmp) / "mosquitto.conf"
    # no queue limit: a burst must wait at the broker for the head-end, not be dropped
    conf.write_text("listener %d %s\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                    "max_inflight_messages 100\n" % (port, h.LOOPBACK))
    proc = h.Proc([h.mosquitto_path(), "-c", conf], "mosquitto", log_dir=tmp)
    h.wait_port(port, timeout=10)
    return proc, port


def publish_all(port):
    """The synthetic fleet's publisher (run in its own process so it does not share the head-end's GIL)."""
    msgs = _messages()
    clients = []
    for i in range(PUBLISHERS):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub-%d" % i)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port, keepalive=60)
        c.loop_start()
        clients.append(c)
    t0 = time.perf_counter()
    infos = [clients[i % PUBLISHERS].publish(t, p, qos=1) for i, (t, p) in enumerate(msgs)]
    for info in infos:
        info.wait_for_publish(timeout=120)
    print("PUBLISHED %d in %.3f s" % (len(msgs), time.perf_counter() - t0), flush=True)
    for c in clients:
        c.disconnect()
        c.loop_stop()


def _through_broker(n, tmp):
    from tools.headend.service import Headend
    from tools.procs import Proc

    broker, port = _mosquitto(tmp)
    head = pub = None
    try:
        head = Headend("127.0.0.1:%d" % port, str(Path(tmp) / "broker.db")).start(timeout_s=10)
        t0 = time.perf_counter()
        pub = Proc([sys.executable, "-m", "tools.bench.bench_headend", str(port)], "publisher", log_dir=tmp)
        deadline = time.monotonic() + 180
        while head.store.count("readings") < n and time.monotonic() < deadline:
            time.sleep(0.02)
        dt = time.perf_counter() - t0
        stored = head.store.count("readings")
        if stored < n:
            raise RuntimeError("only %d of %d messages stored within the time limit" % (stored, n))
        pub.wait_output("PUBLISHED", timeout=30)
        pub_s = float(pub.output().split("PUBLISHED")[1].split()[2])
        return n / dt, n / pub_s
    finally:
        if pub is not None:
            pub.kill()
        if head is not None:
            head.stop()
            head.store.close()
        broker.kill()


def run():
    msgs = _messages()
    with tempfile.TemporaryDirectory(prefix="bench-headend-") as tmp:
        rate, rate_batch, us_dup, ms_report = _in_process(msgs, tmp)
        stored_rate, pub_rate = _through_broker(len(msgs), tmp)
    return {
        "ingest_handle_messages_per_s": round(rate),
        "ingest_handle_many_messages_per_s": round(rate_batch),
        "ingest_duplicate_us_per_message": round(us_dup, 1),
        "report_ms_%d_meters_%d_readings" % (TERMINALS, len(msgs)): round(ms_report, 1),
        "broker_stored_messages_per_s": round(stored_rate),
        "broker_published_messages_per_s": round(pub_rate),
        "broker_messages": len(msgs),
        "broker_terminals": TERMINALS,
    }


if __name__ == "__main__":
    publish_all(int(sys.argv[1]))
