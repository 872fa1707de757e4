"""One terminal on the bench: the real firmware under the unix port, its meter and modem simulators, a broker,
and an independent checker that subscribes to everything the terminal publishes.

Used by the system tests, the soak and the benchmarks, so all three drive the
terminal the same way.

With `time_scale` the whole terminal runs that many times faster than real time: the meters' true time,
the modem's network and GNSS time (one simulated time, the modem's following the meters'), and the
firmware's clock (BDMETER_TIME_SCALE in its environment, which only the unix port reads). Commands are
then signed with the simulated time, the terminal's.
"""

import hashlib
import hmac
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho

from tools.procs import LOOPBACK, ROOT, Mosquitto, Proc
from tools.sim.meter import MeterBus, MeterSpec
from tools.sim.modem import ModemSim

RECORDS = ("energy", "event", "register", "frozen", "meter_event", "settle")


def _nodelay(client):
    """The checker's own socket sends at once too, so latency figures measure the terminal, not Nagle."""
    sock = client.socket()
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def broker_dir():
    """A folder the broker can write its persistence file into.

    Run as root, mosquitto drops its privileges to the `mosquitto` user, which cannot enter a test's 0700
    temporary folder: it would then lose its sessions across a restart without a word to its clients."""
    d = Path(tempfile.mkdtemp(prefix="bdmeter-mqtt-"))
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("mosquitto")
        except KeyError:
            return d
        os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def sign(key_hex, tid, body):
    """The command MAC of docs/PROTOCOL.md, computed independently of the firmware's code."""
    return hmac.new(bytes.fromhex(key_hex), b"bdmeter-cmd-v1\n" + tid.encode() + b"\n" + body.encode(),
                    hashlib.sha256).hexdigest()


class TerminalRig:
    def __init__(self, workdir, *, imei="861234567890123", address="000072007201", home=(40.8425, 111.7490, 1065.0),
                 key="000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", broker=None, seed=3,
                 meter_kw=30.0, speedup=60.0, baud=9600, latency_ms=(5, 20), delay_scale=0.05, cfg=None,
                 heapsize=None, start=True, code=None, time_scale=1):
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.imei, self.address, self.home, self.key = imei, address, home, key
        self.prefix = "bdmeter/%s/" % imei
        self.own_broker = broker is None
        self.broker_dir = broker_dir() if broker is None else None
        self.broker = broker or Mosquitto(log_dir=self.broker_dir, persistent=True)
        self.bus = MeterBus([MeterSpec(address=address, base_kw=meter_kw)], baud=baud, seed=seed,
                            latency_ms=latency_ms, speedup=speedup)
        self.meter_port = self.bus.start()
        self.modem = ModemSim(imei=imei, position=home, noise_m=3.0, cold_start_s=2.0, fake_fix_s=1.0,
                              delay_scale=delay_scale, seed=seed)
        self.modem_port = self.modem.start(control_port=0)  # the control port is the board's reset line
        self.time_scale = time_scale
        if time_scale != 1:
            self.bus.command({"time_scale": time_scale})
            self.modem.sim_time.follow(self.bus.meter(address).true_utc, time_scale)
        self.heapsize = heapsize
        self.code = code or ROOT / "build/mpy"  # the board's flash: main.py, boot.py and the code tree
        self.cfg_path = workdir / "config.json"
        config = {
            "board": "unix", "meter_uart": "%s:%d" % (LOOPBACK, self.meter_port),
            "modem_uart": "%s:%d" % (LOOPBACK, self.modem_port),
            "modem_ctl": "%s:%d" % (LOOPBACK, self.modem.control_port), "broker_host": LOOPBACK,
            "broker_port": self.broker.port, "cmd_key": key, "meters": [address], "meter_baud": baud,
            "poll_s": 2, "heartbeat_s": 2, "gnss_s": 1, "link_backoff_max_s": 4, "keepalive_s": 10,
            "state_dir": str(workdir / "flash"),
            # the simulated meter counts energy `speedup` times faster: a plausible power that much higher
            "meter_max_kw": 4 * (meter_kw + 1) * max(1.0, speedup),
        }
        config.update(cfg or {})
        self.cfg_path.write_text(json.dumps(config))
        self.msgs = []  # (monotonic time, topic leaf, payload dict or bytes, retain)
        self.lock = threading.Condition()  # notified on every message, so waits wake at once
        # A persistent session: across a broker restart the checker misses nothing the broker accepted.
        self.obs = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="checker-" + imei, clean_session=False)
        self.obs.on_message = self._on_message
        self.obs.on_connect = lambda c, ud, flags, rc, props: (_nodelay(c), c.subscribe(self.prefix + "#", qos=1))
        self.obs.reconnect_delay_set(0.2, 2)
        self.obs.connect(LOOPBACK, self.broker.port)
        _nodelay(self.obs)
        self.obs.loop_start()
        self.fw = None
        self.starts = 0
        self.bundle = None  # a tools.release.Bundle: the checker then answers the terminal's update chunk requests
        self.chunks_served = 0
        self.fail_on = None  # a text that, once in the firmware's log, fails every wait at once (e.g. MemoryError)
        if start:
            self.start_firmware()

    def _on_message(self, client, userdata, m):
        try:
            body = json.loads(m.payload)
        except ValueError:
            body = m.payload
        if self.bundle is not None and m.topic == self.prefix + "upd":
            ans = self.bundle.answer(m.payload)
            if ans is not None:
                client.publish(self.prefix + "updc", ans, qos=0)
                self.chunks_served += 1
        with self.lock:
            self.msgs.append((time.monotonic(), m.topic.rpartition("/")[2], body, m.retain))
            self.lock.notify_all()

    # -- simulated time ------------------------------------------------------------
    def now(self):
        """The simulation's true UTC (Unix seconds): the host's clock unless the rig runs scaled."""
        return self.modem.sim_time.now() if self.time_scale != 1 else time.time()

    def advance(self, seconds):
        """Move the simulation's true time ahead (meters and modem alike); the firmware sees it at its next fix."""
        self.bus.command({"advance_s": seconds})
        self.modem.command({"advance_s": seconds})

    # -- firmware ----------------------------------------------------------------
    def start_firmware(self):
        argv = [sys.executable, "-m", "tools.mpunix"]
        if self.heapsize:
            argv += ["-X", "heapsize=%s" % self.heapsize]
        env = None
        if self.time_scale != 1:
            env = dict(os.environ, BDMETER_TIME_SCALE=str(int(self.time_scale)))
        self.starts += 1
        self.fw = Proc(argv + [self.code / "main.py", self.cfg_path], "firmware", log_dir=self.dir, env=env)

    def power_cut(self):
        """SIGKILL the firmware's process group: no goodbye, exactly like pulling the plug."""
        self.fw.kill()

    def alive(self):
        return self.fw is not None and self.fw.p.poll() is None

    # -- what the checker saw --------------------------------------------------------
    def of(self, leaf, since=0.0):
        with self.lock:
            return [b for t, lf, b, _ in self.msgs if lf == leaf and t >= since]

    def record_seqs(self):
        with self.lock:
            return [b["seq"] for _, lf, b, _ in self.msgs if lf in RECORDS and isinstance(b, dict)]

    def wait(self, what, pred, timeout=60.0, allow_exit=False):
        deadline = time.monotonic() + timeout
        next_log_check = 0.0
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            if not allow_exit and self.fw is not None and self.fw.p.poll() is not None:
                raise AssertionError("firmware exited (%s) while waiting for %s:\n%s"
                                     % (self.fw.p.returncode, what, self.fw.output()[-4000:]))
            if self.fail_on and self.fw is not None and time.monotonic() >= next_log_check:
                next_log_check = time.monotonic() + 1.0
                if self.fail_on in self.fw.output():
                    raise AssertionError("firmware logged %s while waiting for %s" % (self.fail_on, what))
            with self.lock:
                self.lock.wait(0.1)
        raise AssertionError("timed out after %.0f s waiting for %s; firmware log:\n%s"
                             % (timeout, what, self.fw.output()[-4000:] if self.fw else ""))

    # -- server commands -------------------------------------------------------------
    def command(self, op, args=None, ts=None, nonce=None, key=None, body=None, mac=None):
        """Publish a signed command; returns (request id, body text)."""
        rid = "t-" + uuid.uuid4().hex[:8]
        if body is None:
            body = json.dumps({"id": rid, "op": op, "args": args or {}, "ts": int(ts or self.now()),
                               "nonce": nonce or uuid.uuid4().hex}, separators=(",", ":"))
        mac = mac or sign(key or self.key, self.imei, body)
        self.obs.publish(self.prefix + "cmd", json.dumps({"body": body, "mac": mac}), qos=1)
        return rid, body

    def answer(self, rid, timeout=30.0):
        return self.wait("resp %s" % rid, lambda: next((r for r in self.of("resp") if r.get("id") == rid), None),
                         timeout)

    def close(self):
        if self.fw is not None:
            self.fw.stop()
        self.obs.loop_stop()
        self.obs.disconnect()
        self.bus.stop()
        self.modem.stop()
        if self.own_broker:
            self.broker.stop()
            if (self.broker_dir / "mosquitto.log").exists():  # kept beside the other logs
                shutil.copy(self.broker_dir / "mosquitto.log", self.dir / "mosquitto.log")
            shutil.rmtree(self.broker_dir, ignore_errors=True)
