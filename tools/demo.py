"""`make demo`: a fleet of simulated terminals around Hohhot, the head-end, one signed query, a regional map.

Each terminal is the real firmware (build/mpy, MicroPython unix port) wired to its own meter
simulator and modem simulator; they publish through a local mosquitto to the head-end, which
stores everything in SQLite. The run is bounded (--seconds); Ctrl-C ends it early.

The broker is secured as in the field (docs/SECURITY.md): a throw-away CA in OUT/run/pki, an account per
terminal (username = its id, a random password in its config) confined to its own topics, the head-end's own
account over TLS on the head-end's listener, anonymous access refused and a message size limit. The terminals
speak TLS through their simulated modules (`broker_tls`, the broker verified against the CA put on each terminal's
flash, OUT/run/tN/state/ca.pem); --no-tls keeps them on plain TCP with their accounts (a private APN).

    python -m tools.demo [--terminals 5] [--seconds 60] [--out build/demo] [--serve [--port 8080]] [--no-tls]

Two more terminals each read a transformer area's supply meter and three customer meters (tools/demo_areas.py);
the run ends with their line-loss rates. It prints how to open the dashboard on the run's database, and with
--serve (`make demo SERVE=1`) keeps everything running and serves the dashboard until Ctrl-C.
"""

import argparse
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

from tools import demo_areas
from tools.headend import assets, lineloss, mapimg, report, users, view
from tools.headend.mqttconn import Broker
from tools.headend.query import send_command
from tools.headend.service import Headend
from tools.pki import make_pki
from tools.procs import ROOT, Mosquitto, Proc

CITY = (40.84, 111.75, 1065.0)  # Hohhot: lat, lon, alt
SPREAD_KM = 5.0  # radius: terminals spread over ~10 km
GOLDEN_ANGLE = math.pi * (3 - math.sqrt(5))
PREFIX = "bdmeter"
SPEEDUP = 600  # the simulated meters' clock and energy run this many times faster than real time
READY = re.compile(r"READY port=(\d+)")
MAX_PACKET = 16384  # the broker's message size limit: twice the largest record the outbox stores (8 KB)


def placements(n):
    """Deterministic positions on a sunflower spiral over the city, one per terminal."""
    out = []
    for i in range(n):
        r = SPREAD_KM * math.sqrt((i + 0.6) / n)
        a = i * GOLDEN_ANGLE
        lat = CITY[0] + r * math.sin(a) / 110.574
        lon = CITY[1] + r * math.cos(a) / (111.320 * math.cos(math.radians(CITY[0])))
        out.append((round(lat, 6), round(lon, 6), round(CITY[2] + 8 * math.sin(3 * a), 1)))
    return out


class Terminal:
    """One simulated terminal: meter simulator, modem simulator, firmware, each in its own process group."""

    def __init__(self, i, pos, broker_port, run_dir, log_dir, specs=None, tid=None):
        self.i = i
        self.tid = tid or "8612345678901%02d" % i
        self.lat, self.lon, self.alt = pos
        # every third terminal reads two meters on its bus: a bigger site
        self.meters = ["%012d" % (72007201 + 10 * i + k) for k in range(2 if i % 3 == 2 else 1)]
        # a transformer area's terminal: its meters simulated in this process, with the area's loads
        self.specs = specs
        self.bus = None
        if specs:
            self.meters = [s.address for s in specs]
        self.key = os.urandom(32).hex()
        self.broker_pass = os.urandom(16).hex()  # its broker account: username = its id
        self.broker_port = broker_port
        self.ca = None  # the CA file to put on its flash: TLS to the broker, verified
        self.dir = run_dir / ("t%d" % (i + 1))
        self.log_dir = log_dir
        self.procs = []
        self.firmware = None

    def _sim(self, module, args, name):
        p = Proc([sys.executable, "-m", module, "--port", "0"] + args, name, log_dir=self.log_dir)
        self.procs.append(p)
        p.wait_output("READY port=", timeout=20)
        return int(READY.search(p.output()).group(1))

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        meter_args = []
        for m in self.meters:
            meter_args += ["--meter", m]
        if self.specs:
            from tools.sim.meter import MeterBus

            self.bus = MeterBus(self.specs, speedup=SPEEDUP, seed=self.i + 1)
            meter_port = self.bus.start()
        else:
            meter_port = self._sim("tools.sim.meter",
                                   meter_args + ["--speedup", str(SPEEDUP), "--seed", str(self.i + 1)],
                                   "meter-t%d" % (self.i + 1))
        modem_port = self._sim("tools.sim.modem", [
            "--imei", self.tid, "--lat", str(self.lat), "--lon", str(self.lon), "--alt", str(self.alt),
            "--noise-m", "3", "--cold-start-s", "2", "--seed", str(self.i + 1), "--delay-scale", "0.05"],
            "modem-t%d" % (self.i + 1))
        cfg = {"board": "unix", "meter_uart": "127.0.0.1:%d" % meter_port,
               "modem_uart": "127.0.0.1:%d" % modem_port, "broker_host": "127.0.0.1",
               "broker_port": self.broker_port, "topic_prefix": PREFIX, "terminal_id": self.tid,
               "broker_user": self.tid, "broker_pass": self.broker_pass,
               "cmd_key": self.key, "meters": self.meters, "poll_s": 5, "heartbeat_s": 5, "gnss_s": 3,
               # the simulated meters count energy SPEEDUP times faster than real time: so may the registers grow,
               # or the terminal's plausibility check rightly keeps every reading out as a meter_anomaly
               "meter_max_kw": 60 * SPEEDUP, "state_dir": str(self.dir / "state")}
        (self.dir / "state").mkdir(exist_ok=True)
        if self.ca:
            shutil.copy(self.ca, self.dir / "state" / "ca.pem")
            cfg.update(broker_tls=True, tls_ca=str((self.dir / "state" / "ca.pem").resolve()), tls_verify=True)
        cfg_path = self.dir / "config.json"
        cfg_path.write_text(json.dumps(cfg, indent=1))
        self.firmware = Proc([sys.executable, "-m", "tools.mpunix", "build/mpy/main.py", cfg_path],
                             "firmware-t%d" % (self.i + 1), log_dir=self.log_dir)
        self.procs.append(self.firmware)

    def exited(self):
        return [p for p in self.procs if p.p.poll() is not None]

    def kill(self):
        for p in self.procs:
            p.kill()
        if self.bus is not None:
            self.bus.stop()


def _progress(elapsed, total, width=30):
    done = min(width, int(width * elapsed / total)) if total else width
    return "[%s%s] %3d/%d s" % ("#" * done, "." * (width - done), elapsed, total)


def _summary(store):
    c = store.counters()
    return "records %d (duplicates %d, invalid %d), heartbeats %d" % (
        c.get("stored", 0), c.get("duplicate", 0), c.get("invalid", 0), c.get("heartbeat", 0))


def live(head, terminals, seconds, tty):
    """Show the fleet until `seconds` pass or Ctrl-C; return the set of terminals ever seen online."""
    t0 = time.monotonic()
    seen_online, warned, last_print = set(), set(), -1e9
    try:
        while True:
            elapsed = time.monotonic() - t0
            fleet = head.store.fleet(heartbeat_s=5)
            seen_online |= {t["tid"] for t in fleet if t["state"] == "online"}
            for term in terminals:
                for p in term.exited():
                    if p.name not in warned:
                        warned.add(p.name)
                        print("\n!! %s exited (%s); last output:\n%s" % (p.name, p.p.returncode, p.output()[-1500:]))
            line = "%s  online %d/%d  %s" % (_progress(elapsed, seconds),
                                              sum(t["state"] == "online" for t in fleet), len(terminals),
                                              _summary(head.store))
            if tty:
                sys.stdout.write("\033[H\033[J" + "bdmeter demo (Ctrl-C ends early)\n\n" + view.table(fleet)
                                 + "\n\n" + line + "\n")
                sys.stdout.flush()
            elif elapsed - last_print >= 15 or elapsed >= seconds:
                print(view.table(fleet) + "\n" + line + "\n", flush=True)
                last_print = elapsed
            if elapsed >= seconds:
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("\nstopping early (Ctrl-C)")
    return seen_online


def ask(broker, term, timeout_s):
    """The signed query of address, position and energy; print the answer; True when it was answered ok."""
    print("\nsigned query to %s: address, position, energy" % term.tid)
    try:
        resp = send_command(broker, term.tid, term.key, "query",
                            {"what": ["address", "position", "energy"]}, prefix=PREFIX, timeout_s=timeout_s)
    except TimeoutError as e:
        print("query failed: %s" % e)
        return False
    print(json.dumps(resp, indent=1))
    return bool(resp.get("ok"))


def regional_report(store, out_dir, grid_deg):
    """Energy per grid cell over the readings of this run: CSV, per-meter CSV and map PNG."""
    rows = store.query("SELECT min(ts) AS a, max(ts) AS b FROM readings WHERE tsrc != 'none'")
    if not rows or rows[0]["a"] is None or rows[0]["a"] == rows[0]["b"]:
        print("report: not enough dated readings for a period")
        return False
    t_from, t_to = rows[0]["a"], rows[0]["b"]
    rep = report.compute(store, t_from, t_to, grid_deg=grid_deg)
    base = out_dir / "energy"
    paths = [report.write_csv(rep, base.with_suffix(".csv")),
             report.write_meters_csv(rep, out_dir / "energy-meters.csv"),
             mapimg.draw(rep, base.with_suffix(".png"))]
    print("\nregional report %s .. %s, grid %g deg: %.2f kWh from %d meters in %d cells"
          % (report.iso(t_from), report.iso(t_to), grid_deg, rep["total_kwh"], len(rep["meters"]),
             len(rep["regions"])))
    for p in paths:
        print("  %s" % p)
    return bool(rep["meters"])


def area_terminals(first, broker_port, out):
    """One terminal per transformer area of demo_areas, south-east of the city, reading the area's four meters."""
    terms = []
    for n, area in enumerate(demo_areas.AREAS):
        pos = (round(CITY[0] - 0.035 + 0.02 * n, 6), round(CITY[1] + 0.05, 6), CITY[2])
        terms.append(Terminal(first + n, pos, broker_port, out / "run", out / "logs", specs=demo_areas.specs(area),
                              tid="86123456789020%d" % n))
    return terms


def line_loss(store):
    """Each area's loss rate over the span in which all its meters have readings on both sides; True when the
    under-registering area is flagged and the normal one is not."""
    span = lineloss.common_span(store)
    if span is None:
        print("\nline loss: the areas' meters have no common span of readings")
        return False
    rows = lineloss.compute(store, span[0], span[1], None, "whole", demo_areas.THRESHOLD)
    print("\nline loss per transformer area, %s .. %s (flagged above %s):"
          % (report.iso(span[0]), report.iso(span[1]), lineloss.percent(demo_areas.THRESHOLD)))
    for r in rows:
        print("  %-16s supply %9s kWh  customers %9s kWh  loss %8s kWh  rate %8s  expected %5.2f %%%s"
              % (r["area"], r["supply_kwh"], r["customers_kwh"], r["loss_kwh"], lineloss.percent(r["rate"]),
                 100 * demo_areas.expected_rate(r["area"]), "  FLAGGED" if r["flagged"] else
                 ("  incomplete: " + "; ".join(r["missing"]) if r["missing"] else "")))
    flags = {r["area"]: r["flagged"] for r in rows}
    return flags == {"TA-01 Xincheng": False, "TA-02 Saihan": True}


def dashboard_login(store, out):
    """A dashboard user `demo` (admin) with a fresh password, written to OUT/dashboard-login.txt."""
    password = os.urandom(9).hex()
    users.add_user(store, "demo", "admin", password, replace=True)
    path = out / "dashboard-login.txt"
    path.write_text("user demo\npassword %s\n" % password)
    path.chmod(0o600)
    return password


def serve_dashboard(head, broker, port, password):
    """Serve the dashboard on the running demo (commands reach the terminals) until Ctrl-C."""
    from zoneinfo import ZoneInfo

    from tools.headend import webapp

    problem = webapp.vendor_ready()
    if problem:
        print("dashboard: %s" % problem)
    settings = webapp.Settings(head.store.path, broker=broker, prefix=PREFIX,
                               tz=ZoneInfo("Asia/Shanghai"), heartbeat_s=5, command_timeout_s=20)
    server, url = webapp.background(webapp.create_app(settings, store=head.store), port=port)
    print("\ndashboard: %s/  (user demo, password %s); the terminals keep running; Ctrl-C ends the demo"
          % (url, password), flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("\nstopping the dashboard")
    finally:
        server.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    # Ctrl-C (even when started from a script that ignores SIGINT) and SIGTERM end the run cleanly
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    ap = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--terminals", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--out", default=str(ROOT / "build" / "demo"))
    ap.add_argument("--grid", type=float, default=0.02, help="report grid in degrees")
    ap.add_argument("--query-timeout", type=float, default=20)
    ap.add_argument("--no-areas", dest="areas", action="store_false",
                    help="leave out the two transformer-area terminals and the line-loss report")
    ap.add_argument("--no-tls", action="store_true", help="the terminals on plain TCP (the head-end stays on TLS)")
    ap.add_argument("--serve", action="store_true", help="at the end, serve the dashboard until Ctrl-C")
    ap.add_argument("--port", type=int, default=8080, help="the dashboard's port with --serve (default 8080)")
    a = ap.parse_args(argv)
    if not 1 <= a.terminals <= 99:
        ap.error("--terminals must be 1..99")
    if not (ROOT / "build" / "mpy" / "main.py").exists():
        print("demo: build/mpy/main.py is missing: run `make mpy` (or `make demo`) first", file=sys.stderr)
        return 2
    out = Path(a.out)
    for sub in ("run", "logs"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    # the head-end's log goes to a file: the live table owns the screen
    logging.basicConfig(filename=str(out / "logs" / "headend.log"), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    db = out / "fleet.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    broker = head = None
    terminals = []
    ok = True
    try:
        fleet = [Terminal(i, pos, None, out / "run", out / "logs") for i, pos in enumerate(placements(a.terminals))]
        if a.areas:
            fleet += area_terminals(a.terminals, None, out)
        pki = make_pki(out / "run" / "pki", clients=())
        accounts = {"headend": os.urandom(16).hex()}
        accounts.update((t.tid, t.broker_pass) for t in fleet)
        broker = Mosquitto(log_dir=out / "logs", pki=pki, accounts=accounts, prefix=PREFIX,
                           max_packet_size=MAX_PACKET)
        for t in fleet:
            t.broker_port, t.ca = (broker.port, None) if a.no_tls else (broker.tls_port, pki.ca)
        service = Broker("127.0.0.1:%d" % broker.service_port, "headend", accounts["headend"], pki.ca)
        head = Headend(service, str(db), prefix=PREFIX, heartbeat_s=5, check_s=0.5).start()
        print("bdmeter demo: %d terminal(s) around Hohhot for %g s; mosquitto on 127.0.0.1:%d (terminals %s, "
              "each with its account), head-end over TLS on %d; database %s"
              % (a.terminals, a.seconds, fleet[0].broker_port, "on plain TCP" if a.no_tls else
                 "over TLS through their modules", broker.service_port, db))
        if a.areas:
            (out / "assets.csv").write_text(demo_areas.register_csv())
            assets.import_csv(head.store, demo_areas.register_csv(), who="demo", where=str(out / "assets.csv"))
        password = dashboard_login(head.store, out)
        for term in fleet:
            terminals.append(term)
            head.store.set_key(term.tid, term.key)
            term.start()
            print("  terminal %s  meter(s) %s  at %.5f,%.5f" % (term.tid, " ".join(term.meters), term.lat, term.lon))
        seen = live(head, terminals, a.seconds, sys.stdout.isatty())
        if not seen:
            first = terminals[0].firmware
            print("\ndemo FAILED: no terminal came online within %g s. Logs are in %s; the first firmware's "
                  "output ends with:\n%s" % (a.seconds, out / "logs", first.output()[-2000:] if first else ""),
                  file=sys.stderr)
            return 1
        print("\n%d of %d terminals came online" % (len(seen), len(terminals)))
        target = next(t for t in terminals if t.tid in seen)
        ok = ask(service, target, a.query_timeout) and ok
        ok = regional_report(head.store, out, a.grid) and ok
        if a.areas:
            ok = line_loss(head.store) and ok
        print("\nthe fleet at the end of the run:\n" + view.table(head.store.fleet(heartbeat_s=5)))
        if a.serve:
            serve_dashboard(head, service, a.port, password)
        else:
            print("\nthe dashboard on this run's data (user demo, password in %s):\n  %s serve --db %s"
                  "  # then open http://127.0.0.1:8080/\n(or `make demo SERVE=1` to keep the terminals running "
                  "and serve it at once)" % (out / "dashboard-login.txt", ROOT / ".venv" / "bin" / "bdmeter-headend",
                                            db))
    except KeyboardInterrupt:
        print("\ninterrupted")
        ok = False
    except (TimeoutError, RuntimeError, OSError) as e:
        print("\ndemo FAILED: %s" % e, file=sys.stderr)
        ok = False
    finally:
        # a second Ctrl-C during shutdown must not leave children behind: ignore it while cleaning up
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _shutdown(terminals, head, broker)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print("\ndemo %s; logs in %s" % ("done" if ok else "finished with errors", out / "logs"))
    return 0 if ok else 1


def _shutdown(terminals, head, broker):
    """Stop the firmware cleanly (it publishes `offline`), then every simulator, the head-end and the broker."""
    firmware = [t.firmware for t in terminals if t.firmware is not None]
    for p in firmware:
        p.signal(signal.SIGINT)
    deadline = time.monotonic() + 8
    for p in firmware:
        while p.p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    for t in terminals:
        t.kill()
    if head is not None:
        try:
            time.sleep(0.5)  # let the last `offline` statuses land
            print("\nafter shutdown (each terminal's last will said offline):\n"
                  + view.table(head.store.fleet(heartbeat_s=5)))
            print(_summary(head.store))
            c = head.store.counters()
            for name in sorted(n for n in c if n.startswith("warning ")):
                print("accepted with a deviation from PROTOCOL.md (%d): %s" % (c[name], name[8:]))
        finally:
            head.stop()
            head.store.close()
    if broker is not None:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
