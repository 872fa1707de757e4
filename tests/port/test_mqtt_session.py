"""lib/mqtt_session under the unix port against a real mosquitto: QoS 1 in order, subscribe, will, clean close."""

import queue

import paho.mqtt.client as paho
import pytest

from harness import ROOT, Mosquitto, Proc, MICROPYTHON

pytestmark = pytest.mark.port


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(log_dir=tmp_path)
    yield b
    b.stop()


def _observer(port):
    q = queue.Queue()
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="observer")
    c.on_message = lambda cl, ud, m: q.put((m.topic, m.payload, m.retain))
    c.connect("127.0.0.1", port)
    c.subscribe("t/#", qos=1)
    c.loop_start()
    return c, q


def _collect(q, until, timeout=20):
    import time

    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            item = q.get(timeout=0.2)
        except queue.Empty:
            continue
        out.append(item)
        if until(out):
            break
    return out


@pytest.mark.parametrize("ending", ["clean", "drop"])
def test_session_against_real_broker(broker, tmp_path, ending):
    obs, q = _observer(broker.port)
    try:
        import time

        time.sleep(0.3)
        mp = Proc([MICROPYTHON, ROOT / "tests/port/mp/mqtt_session_check.py", broker.port, 50, ending], "mp",
                  log_dir=tmp_path)
        mp.wait_output("PUBLISHED 50", timeout=30)
        obs.publish("t/cmd", b"hello-42", qos=1)
        mp.wait_output("DONE", timeout=30)
        assert mp.wait(timeout=10) == 0, mp.output()
        out = mp.output()
        assert "GRANTED 1" in out and "ECHOED hello-42" in out and "BIG" in out
        want_status = b"offline" if ending == "drop" else None
        msgs = _collect(q, lambda o: any(t == "t/big" for t, _, _ in o) and
                        (want_status is None or (("t/status", b"offline", False) in o)))
        data = [p for t, p, _ in msgs if t == "t/data"]
        assert data == [b"%d" % i for i in range(50)]
        assert ("t/status", b"online", False) in msgs
        assert any(t == "t/echo" and p == b"hello-42" for t, p, _ in msgs)
        assert any(t == "t/big" and len(p) == 3000 for t, p, _ in msgs)
        if ending == "drop":
            assert ("t/status", b"offline", False) in msgs, "will not published after an abrupt close"
        mp.kill()
    finally:
        obs.loop_stop()
        obs.disconnect()


def _publisher(port):
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="server")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_oversize_qos1_messages_are_acknowledged(broker, tmp_path):
    # regression: oversize QoS 1 messages were skipped without PUBACK; at the broker's in-flight limit (20)
    # nothing more was delivered, so commands went unanswered while records kept flowing
    mp = Proc([MICROPYTHON, ROOT / "tests/port/mp/mqtt_session_faults.py", broker.port, "oversize"], "mp",
              log_dir=tmp_path)
    mp.wait_output("READY", timeout=20)
    srv = _publisher(broker.port)
    try:
        for i in range(25):
            srv.publish("t/cmd", b"%02d" % i + b"x" * 6000, qos=1).wait_for_publish(5)
        srv.publish("t/cmd", b"small", qos=1).wait_for_publish(5)
        mp.wait_output("DONE", timeout=40)
        out = mp.output()
        assert "GOT small oversize 25 counted 25" in out, out
    finally:
        srv.loop_stop()
        srv.disconnect()
        mp.kill()


def test_memory_error_in_the_reader_ends_the_session(broker, tmp_path):
    # regression: a MemoryError killed the reader task while `connected` stayed true: deaf until keepalive
    mp = Proc([MICROPYTHON, ROOT / "tests/port/mp/mqtt_session_faults.py", broker.port, "oom"], "mp",
              log_dir=tmp_path)
    mp.wait_output("READY", timeout=20)
    srv = _publisher(broker.port)
    try:
        srv.publish("t/cmd", b"hello", qos=1).wait_for_publish(5)
        mp.wait_output("DONE", timeout=40)
        out = mp.output()
        assert "DEAD reader died: MemoryError" in out and "connected False" in out, out
    finally:
        srv.loop_stop()
        srv.disconnect()
        mp.kill()
