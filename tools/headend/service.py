"""The running head-end: an MQTT subscriber feeding Ingest, plus a timer that flags silent terminals."""

import logging
import os
import queue
import signal
import threading
import time

from tools.headend.ingest import Ingest
from tools.headend.mqttconn import Broker, as_broker
from tools.headend.pgstore import open_store

log = logging.getLogger("bdmeter.headend")


def parse_broker(text, default_port=1883):
    """'host:port' (or 'host'), or a Broker, to (host, port)."""
    if isinstance(text, Broker):
        return text.host, text.port
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    return host or "127.0.0.1", int(port) if port else default_port


def subscription(prefix, share=None):
    """The topic filter: every terminal under `prefix`, optionally as a shared subscription."""
    topic = "%s/+/#" % prefix
    return "$share/%s/%s" % (share, topic) if share else topic


_STOP = object()


class Headend:
    """Subscribes to `<prefix>/+/#` and stores every message; `start()` runs it in background threads.

    The network thread only queues messages; one writer thread stores them in batches (one
    transaction each) and acknowledges each QoS 1 message after its batch is committed, so the
    broker keeps a message until it is in the database.
    """

    def __init__(self, broker="127.0.0.1:1883", db="fleet.db", prefix="bdmeter", share=None, heartbeat_s=None,
                 client_id=None, check_s=1.0, keepalive_s=30, store=None, batch_max=500):
        self.broker = as_broker(broker)  # 'host:port' or a Broker with account and TLS (tools/headend/mqttconn.py)
        self.host, self.port = self.broker.host, self.broker.port
        self.store = store or open_store(db)
        self.ingest = Ingest(self.store, prefix, heartbeat_s)
        self.topic = subscription(prefix, share)
        self.check_s = check_s
        self.keepalive_s = keepalive_s
        self.batch_max = batch_max
        self.received = 0
        self.handled = 0
        self.errors = 0
        self._queue = queue.Queue()
        self._generation = 0
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._writer = None
        self._refused = None
        # a fixed client id keeps a persistent session: the broker queues records while we are down
        persistent = client_id is not None
        cid = client_id or "bdmeter-headend-%d-%s" % (os.getpid(), os.urandom(3).hex())
        self.client = self.broker.client(cid, clean_session=not persistent, manual_ack=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self, timeout_s=10.0):
        """Connect, subscribe and run in background threads; raise TimeoutError if not subscribed in time."""
        self._stop.clear()
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self.client.loop_start()
        self._writer = threading.Thread(target=self._write_loop, name="headend-writer", daemon=True)
        self._writer.start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise TimeoutError("head-end: no subscription to %s within %.0f s%s"
                               % (self.broker, timeout_s, self._why()))
        return self

    def _why(self):
        from tools.headend.mqttconn import diagnose

        why = self._refused and "the broker refused the connection: %s" % self._refused or diagnose(self.broker)
        return " (%s)" % why if why else ""

    def stop(self):
        """Disconnect and join the threads."""
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
        if self._writer is not None:
            # the writer stores what is already queued, then ends
            self._queue.put(_STOP)
            self._writer.join(timeout=30)
            self._writer = None

    def run(self):
        """Run until Ctrl-C (SIGINT) or SIGTERM."""
        if threading.current_thread() is threading.main_thread():
            # A process started in the background by a non-interactive shell inherits SIGINT ignored, and
            # Python then installs no KeyboardInterrupt handler: install it, and treat SIGTERM the same way.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.default_int_handler)
        self.start()
        log.info("head-end: subscribed to %s on %s, database %s", self.topic, self.broker, self.store.path)
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
            log.info("head-end: stopped after %d messages; counters %s", self.received, self.store.counters())

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._refused = str(reason_code)
            log.warning("head-end: broker refused the connection: %s", reason_code)
            return
        # packet ids of an earlier connection must not be acknowledged on this one
        self._generation += 1
        client.subscribe(self.topic, qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._subscribed.clear()
        if not self._stop.is_set():
            log.warning("head-end: disconnected (%s); reconnecting", reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            log.error("head-end: subscription to %s refused", self.topic)
            return
        self._subscribed.set()

    def _on_message(self, client, userdata, msg):
        self.received += 1
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)[:200]
        self._queue.put((topic, msg.payload, bool(msg.retain), msg.mid, msg.qos, self._generation))

    def _write_loop(self):
        next_check = time.monotonic() + self.check_s
        stopping = False
        while not stopping:
            try:
                item = self._queue.get(timeout=max(0.0, next_check - time.monotonic()))
            except queue.Empty:
                item = None
            batch = []
            while item is not None:
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= self.batch_max:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if batch:
                self._store(batch)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self.check_s
                try:
                    self.ingest.check_silent(time.time())
                except Exception:
                    log.exception("head-end: silent check failed")

    def _store(self, batch):
        try:
            self.ingest.handle_many([(t, p, r) for t, p, r, _, _, _ in batch])
        except Exception:
            # one bad row must not cost the batch: retry one by one, count what still fails
            log.exception("head-end: batch of %d failed; storing one by one", len(batch))
            for t, p, r, _, _, _ in batch:
                try:
                    self.ingest.handle(t, p, retained=r)
                except Exception:
                    self.errors += 1
                    log.exception("head-end: could not store a message on %s", t[:80])
        self.handled += len(batch)
        for _, _, _, mid, qos, gen in batch:
            if qos and gen == self._generation:
                self.client.ack(mid, qos)
