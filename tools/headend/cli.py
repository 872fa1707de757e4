"""Command line: run, status, query, report, key.

    python -m tools.headend run    --broker 127.0.0.1:1883 --db fleet.db [--prefix bdmeter] [--share GROUP]
    python -m tools.headend status --db fleet.db
    python -m tools.headend query  --broker 127.0.0.1:1883 --db fleet.db [--key HEX | --keys FILE] TID WHAT...
    python -m tools.headend report --db fleet.db --from ISO --to ISO (--grid DEG | --regions FILE.geojson)
    python -m tools.headend key    --db fleet.db TID HEX
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from tools.headend import mapimg, report, view
from tools.headend.store import Store


def _size(text):
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def parser():
    p = argparse.ArgumentParser(prog="python -m tools.headend", description="bdmeter head-end")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="subscribe and store everything the terminals publish")
    r.add_argument("--broker", default="127.0.0.1:1883", help="host:port")
    r.add_argument("--db", default="fleet.db")
    r.add_argument("--prefix", default="bdmeter")
    r.add_argument("--share", metavar="GROUP", help="shared subscription group: workers split the messages")
    r.add_argument("--heartbeat-s", type=float, help="heartbeat period until one is learned from the terminal")
    r.add_argument("--client-id", help="fixed MQTT client id: a persistent session (broker queues while down)")
    r.add_argument("--check-s", type=float, default=1.0, help="how often to look for silent terminals")
    r.add_argument("-v", "--verbose", action="store_true")

    s = sub.add_parser("status", help="the fleet as a table")
    s.add_argument("--db", default="fleet.db")
    s.add_argument("--heartbeat-s", type=float)
    s.add_argument("--json", action="store_true", help="JSON instead of a table")

    q = sub.add_parser("query", help="send a signed command and print the answer")
    q.add_argument("--broker", default="127.0.0.1:1883")
    q.add_argument("--db", help="database holding command keys (table keys); the answer is stored there too")
    q.add_argument("--prefix", default="bdmeter")
    q.add_argument("--key", help="the terminal's cmd_key, hex")
    q.add_argument("--keys", help="file of keys: JSON {tid: hex} or lines 'tid hex'")
    q.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the answer")
    q.add_argument("terminal")
    q.add_argument("what", nargs="*", help="address position energy (a query), or status, read, sync_time")

    g = sub.add_parser("report", help="energy per region in a period: CSV and map PNG")
    g.add_argument("--db", default="fleet.db")
    g.add_argument("--from", dest="t_from", required=True, help="ISO date/time (UTC unless a zone is given)")
    g.add_argument("--to", dest="t_to", required=True)
    area = g.add_mutually_exclusive_group(required=True)
    area.add_argument("--grid", type=float, metavar="DEG", help="square cells of DEG degrees")
    area.add_argument("--regions", metavar="FILE", help="GeoJSON FeatureCollection of polygons")
    g.add_argument("--out", default="build/report/energy", help="output path without extension")
    g.add_argument("--size", type=_size, default=(1000, 800), help="map size WxH in pixels")

    k = sub.add_parser("key", help="store a terminal's command key in the database")
    k.add_argument("--db", default="fleet.db")
    k.add_argument("terminal")
    k.add_argument("hex")
    return p


def load_keys(path):
    """Keys from a file: a JSON object {tid: hex} or lines 'tid hex'."""
    text = Path(path).read_text()
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return {str(k): str(v) for k, v in obj.items()}
    except ValueError:
        pass
    keys = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.lstrip().startswith("#"):
            keys[parts[0]] = parts[1]
    return keys


def cmd_run(a):
    from tools.headend.service import Headend

    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    Headend(a.broker, a.db, a.prefix, a.share, a.heartbeat_s, a.client_id, a.check_s).run()
    return 0


def _existing(path):
    if not Path(path).exists():
        raise ValueError("no database at %s (start `run` first)" % path)
    return Store(path)


def cmd_status(a):
    store = _existing(a.db)
    try:
        fleet = store.fleet(time.time(), a.heartbeat_s)
        if a.json:
            print(json.dumps(fleet, indent=1))
        else:
            print(view.table(fleet))
            c = store.counters()
            print("\nrecords stored %d, duplicates %d, invalid %d, heartbeats %d"
                  % (c.get("stored", 0), c.get("duplicate", 0), c.get("invalid", 0), c.get("heartbeat", 0)))
            for name in sorted(n for n in c if n.startswith("warning ")):
                print("accepted with a deviation (%d): %s" % (c[name], name[8:]))
    finally:
        store.close()
    return 0


def cmd_query(a):
    from tools.headend.query import op_for, send_command

    store = Store(a.db) if a.db else None
    try:
        key = a.key
        if key is None and a.keys:
            key = load_keys(a.keys).get(a.terminal)
        if key is None and store is not None:
            key = store.key(a.terminal)
        if key is None:
            print("query: no command key for %s (give --key, --keys or store one with `key`)" % a.terminal,
                  file=sys.stderr)
            return 2
        try:
            op, args = op_for(a.what)
        except ValueError as e:
            print("query: %s" % e, file=sys.stderr)
            return 2
        try:
            resp = send_command(a.broker, a.terminal, key, op, args, a.prefix, a.timeout)
        except TimeoutError as e:
            print("query: %s" % e, file=sys.stderr)
            return 2
        if store is not None:
            with store.tx():
                store.touch(a.terminal, time.time())
                store.add_response(a.terminal, resp, time.time())
        print(json.dumps(resp, indent=1))
        return 0 if resp.get("ok") else 1
    finally:
        if store is not None:
            store.close()


def cmd_report(a):
    t_from, t_to = report.parse_time(a.t_from), report.parse_time(a.t_to)
    regions = report.load_geojson(a.regions) if a.regions else None
    store = _existing(a.db)
    try:
        rep = report.compute(store, t_from, t_to, grid_deg=a.grid, regions=regions)
    finally:
        store.close()
    base = Path(a.out)
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [report.write_csv(rep, base.with_suffix(".csv")),
             report.write_meters_csv(rep, base.parent / (base.name + "-meters.csv")),
             mapimg.draw(rep, base.with_suffix(".png"), size=a.size)]
    print("energy %s .. %s: %.3f kWh from %d meters in %d regions (%d meters skipped)"
          % (report.iso(t_from), report.iso(t_to), rep["total_kwh"], len(rep["meters"]), len(rep["regions"]),
             len(rep["skipped"])))
    for p in paths:
        print(p)
    return 0


def cmd_key(a):
    from tools.headend.sign import key_bytes

    key_bytes(a.hex)
    store = Store(a.db)
    try:
        store.set_key(a.terminal, a.hex)
    finally:
        store.close()
    print("key stored for %s" % a.terminal)
    return 0


def main(argv=None):
    a = parser().parse_args(argv)
    try:
        return {"run": cmd_run, "status": cmd_status, "query": cmd_query, "report": cmd_report,
                "key": cmd_key}[a.cmd](a)
    except (ValueError, OSError) as e:
        print("%s: %s" % (a.cmd, e), file=sys.stderr)
        return 2
