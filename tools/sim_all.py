"""`make sim`: one terminal on this machine: mosquitto, the meter and modem simulators, the head-end and the firmware.

One command, one interleaved log (each line prefixed with its component's
name), one Ctrl-C stops everything in order (the firmware first) and nothing
is left running. Ports, all on 127.0.0.1:

    1883  mosquitto (MQTT, plain TCP: --no-tls, --plain-broker) --mqtt-port
    8883  mosquitto over TLS, the terminal's listener          --mqtt-tls-port
    8884  mosquitto, the head-end's listener (TLS)           --mqtt-service-port
    7001  meter bus simulator (DL/T 645 over "RS-485")       --meter-port
    7002  modem simulator (AT commands over "UART")          --modem-port
    7003  modem simulator's control port (the RESET line)    --modem-ctl-port

The broker is secured as in the field (docs/SECURITY.md): no anonymous access, the
terminal's account (broker_user = its id, broker_pass in its config) confined to its
own topics, the head-end's account over TLS on its own listener, a message size
limit. The terminal speaks TLS through the simulated module (broker_tls, the
broker's certificate verified against the CA that the sim puts on the terminal's
flash, state/ca.pem); --no-tls keeps the secured broker with the terminal on
plain TCP (private APN), --plain-broker runs the anonymous broker of before.

Files go to build/sim/ (--dir): config.json (written there unless --config
names one; checked with tools.checkconfig either way), the firmware's flash
(state/), the throw-away CA and certificates (pki/), the head-end's password
(headend.pw) and database (fleet.db, which also holds the terminal's command key),
and headend.args, the head-end's connection options, so from a second shell

    python -m tools.headend query $(cat build/sim/headend.args) --db build/sim/fleet.db 861234567890123 address

    python -m tools.sim_all [--config cfg.json] [--dir build/sim] [--seconds N] [--mqtt-port 1883] ...
"""

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tools import checkconfig
from tools.procs import LOOPBACK, ROOT, mosquitto_path, take_terminal, wait_port, write_conf

IMEI = "861234567890123"  # the modem simulator's default IMEI: the terminal id
METER = "000072007201"
MAX_PACKET = 16384  # the broker's message size limit: twice the largest record the outbox stores (8 KB)
_NAME_W = 8
_out_lock = threading.Lock()


def say(name, text):
    with _out_lock:
        for line in text.splitlines() or [""]:
            sys.stdout.write("%-*s | %s\n" % (_NAME_W, name, line))
        sys.stdout.flush()


class Child:
    """One component in its own session (a terminal's Ctrl-C reaches only this launcher, which stops it in
    order); its output is copied line by line with its name in front."""

    def __init__(self, name, argv, ready=None):
        self.name = name
        self.ready_text = ready
        self.ready = threading.Event()
        self.lines = []
        self.p = subprocess.Popen([str(a) for a in argv], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        say("sim", "started %s (pid %d)" % (name, self.p.pid))
        self.reader = threading.Thread(target=self._copy, daemon=True)
        self.reader.start()

    def _copy(self):
        for raw in iter(self.p.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if self.ready_text and self.ready_text in line:
                self.ready.set()
            say(self.name, line)
        self.p.stdout.close()

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.wait(0.1):
                return
            if self.p.poll() is not None:
                raise RuntimeError("%s exited (status %s) before it was ready" % (self.name, self.p.returncode))
        raise RuntimeError("%s not ready after %.0f s" % (self.name, timeout))

    def stop(self, timeout):
        """SIGINT to its process group; SIGKILL to the group after `timeout`. Returns its exit status."""
        if self.p.poll() is None:
            _killpg(self.p.pid, signal.SIGINT)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                say("sim", "%s did not stop within %.0f s: killed" % (self.name, timeout))
        _killpg(self.p.pid, signal.SIGKILL)  # whatever is left of its group (a launcher's child)
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.reader.join(timeout=2)
        return self.p.returncode


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _config(a, run_dir, pki):
    """The firmware's config file: --config as given (checked), else build/sim/config.json for these ports (with
    `pki`: TLS to the broker, its CA copied to the terminal's flash)."""
    if a.config:
        return Path(a.config)
    path = run_dir / "config.json"
    old = {}
    try:
        old = json.loads(path.read_text())  # keep the keys across runs: the head-end has them
    except (OSError, ValueError):
        pass
    old = old if isinstance(old, dict) else {}
    key, password = old.get("cmd_key"), old.get("broker_pass")
    cfg = {"board": "unix", "meter_uart": "%s:%d" % (LOOPBACK, a.meter_port),
           "modem_uart": "%s:%d" % (LOOPBACK, a.modem_port), "modem_ctl": "%s:%d" % (LOOPBACK, a.modem_ctl_port),
           "broker_host": LOOPBACK, "broker_port": a.mqtt_port, "cmd_key": key or os.urandom(32).hex(),
           "meters": [METER], "poll_s": 30, "heartbeat_s": 30, "gnss_s": 5, "state_dir": str(run_dir / "state")}
    if not a.plain_broker:
        cfg.update(broker_user=IMEI, broker_pass=password or os.urandom(16).hex())
    if pki is not None:
        ca = (run_dir / "state" / "ca.pem").resolve()  # the terminal's flash under the unix port
        ca.parent.mkdir(parents=True, exist_ok=True)
        ca.write_bytes(pki.ca.read_bytes())
        cfg.update(broker_port=a.mqtt_tls_port, broker_tls=True, tls_ca=str(ca), tls_verify=True)
    path.write_text(json.dumps(cfg, indent=1) + "\n")
    return path


def _online(db):
    """Terminal ids the head-end holds as online (its retained status), read-only; empty if it cannot tell yet."""
    try:
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=1)
        try:
            return {r[0] for r in con.execute("SELECT tid FROM terminals WHERE status_state = 'online'")}
        finally:
            con.close()
    except sqlite3.Error:
        return set()


def _secret(path):
    """The password kept in `path` (made, owner-only, on first use)."""
    try:
        text = path.read_text().strip()
        if text:
            return text
    except OSError:
        pass
    text = os.urandom(16).hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return text


def _pki(a, run_dir):
    """A fresh throw-away CA and server certificate in DIR/pki (none for --plain-broker)."""
    if a.plain_broker:
        return None
    from tools.pki import make_pki

    return make_pki(run_dir / "pki", clients=())


def _broker(a, run_dir, cfg_path, pki):
    """Write the broker's config for these ports; return the head-end's connection options (none when plain),
    or a problem as text."""
    if pki is None:
        write_conf(run_dir, a.mqtt_port)
        return [], None
    cfg = json.loads(cfg_path.read_text())
    user, password = cfg.get("broker_user"), cfg.get("broker_pass")
    if not user or not password:
        return None, ("%s has no broker_user/broker_pass: the secured broker refuses anonymous terminals (add them, "
                      "broker_user = the terminal's id, or run with --plain-broker)" % cfg_path)
    he_pw = run_dir / "headend.pw"
    accounts = {"headend": _secret(he_pw), user: password}
    write_conf(run_dir, a.mqtt_port, a.mqtt_tls_port, a.mqtt_service_port, pki=pki, accounts=accounts,
               max_packet_size=MAX_PACKET)
    opts = ["--broker", "%s:%d" % (LOOPBACK, a.mqtt_service_port), "--mqtt-user", "headend",
            "--mqtt-password-file", str(he_pw.resolve()), "--mqtt-cafile", str(pki.ca.resolve())]
    (run_dir / "headend.args").write_text(" ".join(opts) + "\n")
    return opts, None


def _stop_all(children):
    """The firmware first (its links close cleanly), then the head-end, the simulators, the broker."""
    rcs = {}
    for c in reversed(children):
        rcs[c.name] = c.stop(12 if c.name == "firmware" else 5)
    return rcs


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(a):
    run_dir = Path(a.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (ROOT / "build" / "mpy" / "main.py").exists():
        say("sim", "build/mpy/main.py is missing: run `make mpy` (or `make sim`) first")
        return 2
    exe = mosquitto_path()
    if not exe:
        say("sim", "mosquitto is not installed: run `make venv` (installs Debian's mosquitto)")
        return 2
    pki = _pki(a, run_dir)
    cfg_path = _config(a, run_dir, pki if not a.no_tls else None)
    problems = checkconfig.problems(str(cfg_path))
    if problems:
        for line in problems:
            say("sim", line)
        say("sim", "refusing to start anything with %d config problem(s)" % len(problems))
        return 2
    ports = {"--mqtt-port": a.mqtt_port, "--meter-port": a.meter_port, "--modem-port": a.modem_port,
             "--modem-ctl-port": a.modem_ctl_port}
    if not a.plain_broker:
        ports.update({"--mqtt-tls-port": a.mqtt_tls_port, "--mqtt-service-port": a.mqtt_service_port})
    busy = ["%d (%s)" % (p, opt) for opt, p in ports.items() if not _port_free(p)]
    if busy:
        say("sim", "port(s) in use: %s; stop what uses them or choose others" % ", ".join(busy))
        return 2
    db = run_dir / "fleet.db"
    headend_opts, problem = _broker(a, run_dir, cfg_path, pki)
    if problem:
        say("sim", problem)
        return 2
    conf = run_dir / "mosquitto.conf"
    py = sys.executable
    children = []
    online = set()
    rc = 0
    deadline = time.monotonic() + a.seconds if a.seconds else None
    try:
        children.append(Child("mqtt", [exe, "-c", conf]))
        for port in (a.mqtt_port,) if a.plain_broker else (a.mqtt_port, a.mqtt_tls_port, a.mqtt_service_port):
            wait_port(port, timeout=10)
        children.append(Child("meter", [py, "-u", "-m", "tools.sim.meter", "--port", a.meter_port, "--meter", METER,
                                         "--speedup", "60"], ready="READY port="))
        children.append(Child("modem", [py, "-u", "-m", "tools.sim.modem", "--port", a.modem_port, "--control-port",
                                         a.modem_ctl_port, "--imei", IMEI, "--cold-start-s", "5",
                                         "--delay-scale", "0.1"], ready="READY port="))
        for c in children[1:]:
            c.wait_ready(20)
        children.append(Child("headend", [py, "-u", "-m", "tools.headend", "run", "--broker",
                                          "%s:%d" % (LOOPBACK, a.mqtt_port), "--db", db, "--heartbeat-s", "30"]
                              + headend_opts, ready="subscribed"))
        children[-1].wait_ready(20)
        key = json.loads(cfg_path.read_text()).get("cmd_key")
        if key:
            with sqlite3.connect(str(db), timeout=5) as con:  # the head-end's key table: queries can be signed
                con.execute("INSERT OR REPLACE INTO keys(tid, key_hex) VALUES (?, ?)", (IMEI, key))
        children.append(Child("firmware", [py, "-m", "tools.mpunix", "build/mpy/main.py", cfg_path]))
        tls = json.loads(cfg_path.read_text()).get("broker_tls")
        say("sim", "running: MQTT %s:%d%s, meter %d, modem %d (control %d), config %s; Ctrl-C stops everything"
            % (LOOPBACK, a.mqtt_port, "" if a.plain_broker else " (accounts; TLS %d%s; head-end over TLS %d, "
               "options in %s)" % (a.mqtt_tls_port, ", the terminal's link" if tls else "", a.mqtt_service_port,
                                   run_dir / "headend.args"),
               a.meter_port, a.modem_port, a.modem_ctl_port, cfg_path))
        while deadline is None or time.monotonic() < deadline:
            dead = [c for c in children if c.p.poll() is not None]
            if dead:
                say("sim", "%s exited (status %s): stopping everything" % (dead[0].name, dead[0].p.returncode))
                rc = 1
                break
            now_online = _online(db)
            for tid in sorted(now_online - online):
                say("sim", "terminal %s is online at the head-end" % tid)
            for tid in sorted(online - now_online):
                say("sim", "terminal %s is no longer online at the head-end" % tid)
            online = now_online
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("sim", "Ctrl-C: stopping")
    except (RuntimeError, TimeoutError, OSError, sqlite3.Error) as e:
        say("sim", "failed: %s" % e)
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave children behind
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        rcs = _stop_all(children)
        say("sim", "stopped: %s" % ", ".join("%s %s" % (n, r) for n, r in reversed(list(rcs.items()))))
    return rc


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.sim_all", description=__doc__.splitlines()[0])
    ap.add_argument("--mqtt-port", type=int, default=1883, help="mosquitto's port (default 1883)")
    ap.add_argument("--mqtt-tls-port", type=int, default=8883, help="mosquitto's TLS port (default 8883)")
    ap.add_argument("--mqtt-service-port", type=int, default=8884,
                    help="mosquitto's TLS port for the head-end's account (default 8884)")
    ap.add_argument("--plain-broker", action="store_true",
                    help="an anonymous broker without TLS (as before the broker was secured)")
    ap.add_argument("--no-tls", action="store_true",
                    help="the terminal on plain TCP with its account (a private APN); the head-end stays on TLS")
    ap.add_argument("--meter-port", type=int, default=7001, help="meter bus simulator's port (default 7001)")
    ap.add_argument("--modem-port", type=int, default=7002, help="modem simulator's port (default 7002)")
    ap.add_argument("--modem-ctl-port", type=int, default=7003,
                    help="modem simulator's control port, the module's RESET line (default 7003)")
    ap.add_argument("--dir", default=str(ROOT / "build" / "sim"), help="where the files go (default build/sim)")
    ap.add_argument("--config", help="the firmware's config file (default: one written to DIR for these ports)")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (default 0: at Ctrl-C)")
    a = ap.parse_args(argv)
    for opt in ("mqtt_port", "mqtt_tls_port", "mqtt_service_port", "meter_port", "modem_port", "modem_ctl_port"):
        if not 0 < getattr(a, opt) < 65536:
            ap.error("--%s must be 1..65535" % opt.replace("_", "-"))
    if a.seconds < 0:
        ap.error("--seconds must be 0 or more")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    give_back = take_terminal()
    try:
        return run(a)
    finally:
        if give_back is not None:
            give_back()


if __name__ == "__main__":
    sys.exit(main())
