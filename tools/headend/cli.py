"""Command line `bdmeter-headend` (also `python -m tools.headend`): run, status, query, report, key, update.

    bdmeter-headend run    --broker 127.0.0.1:1883 --db fleet.db [--prefix bdmeter] [--share GROUP]
                           [--mqtt-user NAME --mqtt-password-file FILE] [--mqtt-cafile CA.pem
                           [--mqtt-certfile CERT.pem --mqtt-keyfile KEY.pem]]   (also for query, update, serve)
    bdmeter-headend status --db fleet.db [--state online|silent|offline|unknown] [--tz Asia/Shanghai] [--json]
    bdmeter-headend query  --broker 127.0.0.1:1883 --db fleet.db [--key HEX | --keys FILE] TID WHAT...
    bdmeter-headend report --db fleet.db --from ISO --to ISO (--grid DEG | --regions FILE.geojson)
    bdmeter-headend key    --db fleet.db [--create] TID HEX
    bdmeter-headend days   --db fleet.db --from DATE --to DATE [--json]   (whole days from frozen values)
    bdmeter-headend completeness --db fleet.db --from DATE --to DATE [--json]
    bdmeter-headend events --db fleet.db [--terminal TID] [--meter ADDR] [--kind KIND] [--json]
    bdmeter-headend settlements --db fleet.db [--meter ADDR] [--terminal TID] [--from DATE] [--to DATE] [--json]
    bdmeter-headend update --broker 127.0.0.1:1883 --bundle DIR [--db fleet.db | --key HEX] [--downgrade] TID...
    bdmeter-headend serve  --db fleet.db [--bind 127.0.0.1:8080] [--broker HOST:PORT] [--tz Asia/Shanghai]
    bdmeter-headend user   add|remove|list --db fleet.db [NAME] [--role viewer|operator|admin]
    bdmeter-headend assets import|export --db fleet.db [FILE.csv]
    bdmeter-headend lineloss --db fleet.db --from ISO --to ISO [--step day|whole] [--threshold PCT] [--csv OUT]

Every argument is checked before anything is connected, computed or written (tools/headend/args.py); a
bad one ends with a message naming it and exit status 2. Only what a command uses is imported: `status`
needs neither the MQTT client nor Pillow.
"""

import argparse
import json
import logging
import sys
import time
from datetime import timezone
from pathlib import Path

from tools.headend import args as types
from tools.headend import cli_records, cli_web, mqttconn, report, view
from tools.headend.pgstore import is_dsn, open_store

PROG = "bdmeter-headend"


def parser():
    p = argparse.ArgumentParser(prog=PROG, description="bdmeter head-end: store what terminals publish, show the "
                                "fleet, send signed commands, report energy per region")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="subscribe and store everything the terminals publish")
    r.add_argument("--broker", type=types.broker, default="127.0.0.1:1883", help="host:port (default %(default)s)")
    r.add_argument("--db", type=types.new_db, default="fleet.db", help="database, created if missing "
                   "(default %(default)s)")
    r.add_argument("--prefix", type=types.ident("topic prefix"), default="bdmeter", help="default %(default)s")
    r.add_argument("--share", type=types.ident("group name"), metavar="GROUP",
                   help="shared subscription group: workers split the messages")
    r.add_argument("--heartbeat-s", type=types.positive_seconds(7 * 86400),
                   help="heartbeat period until one is learned from the terminal")
    r.add_argument("--client-id", type=types.ident("client id"),
                   help="fixed MQTT client id: a persistent session (broker queues while down)")
    r.add_argument("--check-s", type=types.positive_seconds(3600), default=1.0,
                   help="how often to look for silent terminals (default %(default)s)")
    r.add_argument("-v", "--verbose", action="store_true")
    mqttconn.add_options(r)

    s = sub.add_parser("status", help="the fleet as a table")
    s.add_argument("--db", type=types.existing_db, default="fleet.db", help="default %(default)s")
    s.add_argument("--heartbeat-s", type=types.positive_seconds(7 * 86400),
                   help="heartbeat period for terminals whose period is not learned yet")
    s.add_argument("--state", choices=view.STATES, help="show only the terminals in this state")
    s.add_argument("--tz", type=types.zone, default=timezone.utc, metavar="ZONE",
                   help="show times in this IANA zone, e.g. Asia/Shanghai (default UTC)")
    s.add_argument("--json", action="store_true", help="JSON instead of a table")

    q = sub.add_parser("query", help="send a signed command and print the answer")
    q.add_argument("--broker", type=types.broker, default="127.0.0.1:1883", help="host:port (default %(default)s)")
    q.add_argument("--db", type=types.existing_db,
                   help="database holding command keys (table keys); the answer is stored there too")
    q.add_argument("--prefix", type=types.ident("topic prefix"), default="bdmeter", help="default %(default)s")
    q.add_argument("--key", type=types.key_hex, help="the terminal's cmd_key, hex")
    q.add_argument("--keys", type=types.keys_file, help="file of keys: JSON {tid: hex} or lines 'tid hex'")
    q.add_argument("--timeout", type=types.positive_seconds(3600), default=20.0,
                   help="seconds to wait for the answer (default %(default)s)")
    mqttconn.add_options(q)
    q.add_argument("terminal", type=types.terminal)
    q.add_argument("what", nargs="*", help="address position energy (one query, the default); or one of status, "
                   "read, sync_time, reboot; or config.get [KEY...]; or config.set KEY=VALUE... (VALUE as JSON "
                   "where it parses: poll_s=60 inst='[\"v\",\"i\"]')")

    g = sub.add_parser("report", help="energy per region in a period: CSV and map PNG")
    g.add_argument("--db", type=types.existing_db, default="fleet.db", help="default %(default)s")
    g.add_argument("--from", dest="t_from", type=types.when, required=True,
                   help="ISO date/time (UTC unless a zone is given)")
    g.add_argument("--to", dest="t_to", type=types.when, required=True, help="ISO date/time, after --from")
    area = g.add_mutually_exclusive_group(required=True)
    area.add_argument("--grid", type=types.grid_deg, metavar="DEG",
                      help="square cells of DEG degrees (%g to %g)" % (types.GRID_MIN_DEG, types.GRID_MAX_DEG))
    area.add_argument("--regions", type=types.regions, metavar="FILE", help="GeoJSON FeatureCollection of polygons")
    g.add_argument("--out", type=types.out_base, default="build/report/energy",
                   help="output path without extension (default %(default)s)")
    g.add_argument("--size", type=types.size, default=(1000, 800), help="map size WxH in pixels (default 1000x800)")
    g.add_argument("--tz", type=types.zone, default=types.zone("Asia/Shanghai"), metavar="ZONE", help="the meters' "
                   "time zone: a period from midnight to midnight there uses their frozen values (default %(default)s)")

    d = sub.add_parser("days", help="energy per meter-local day from the meters' frozen values (days add up "
                       "exactly to the period)")
    c = sub.add_parser("completeness", help="per day: meters with a frozen value / meters registered, and the "
                       "missing ones")
    for x in (d, c):
        x.add_argument("--db", type=types.existing_db, default="fleet.db", help="default %(default)s")
        x.add_argument("--from", dest="d_from", type=types.day, required=True, help="first day, YYYY-MM-DD")
        x.add_argument("--to", dest="d_to", type=types.day, required=True, help="last day, YYYY-MM-DD")
        x.add_argument("--json", action="store_true", help="JSON instead of text")
    e = sub.add_parser("events", help="the meters' own events (power-down, cover open, clock set...), newest "
                       "first, fleet-wide or per terminal")
    e.add_argument("--db", type=types.existing_db, default="fleet.db", help="default %(default)s")
    e.add_argument("--terminal", type=types.terminal, help="only the meters of this terminal")
    e.add_argument("--meter", help="only this meter (12 digits)")
    e.add_argument("--kind", help="only this kind, e.g. power_down, meter_cover")
    e.add_argument("--json", action="store_true", help="JSON instead of a table")

    u = sub.add_parser("update", help="offer a signed update bundle to terminals, serve its chunks, and wait for "
                       "each one's outcome (docs/UPDATE.md)")
    u.add_argument("--broker", type=types.broker, default="127.0.0.1:1883", help="host:port (default %(default)s)")
    u.add_argument("--db", type=types.existing_db, help="database holding command keys (table keys)")
    u.add_argument("--prefix", type=types.ident("topic prefix"), default="bdmeter", help="default %(default)s")
    u.add_argument("--key", type=types.key_hex, help="the terminals' cmd_key, hex")
    u.add_argument("--keys", type=types.keys_file, help="file of keys: JSON {tid: hex} or lines 'tid hex'")
    u.add_argument("--bundle", type=types.bundle, required=True, metavar="DIR",
                   help="a bundle made by `python -m tools.release pack`")
    u.add_argument("--downgrade", action="store_true", help="allow a version older than a terminal's own")
    u.add_argument("--timeout", type=types.positive_seconds(7 * 86400), default=1800.0,
                   help="seconds to wait for every outcome (default %(default)s)")
    mqttconn.add_options(u)
    u.add_argument("terminals", nargs="+", type=types.terminal, metavar="TID")

    k = sub.add_parser("key", help="store a terminal's command key in the database")
    k.add_argument("--db", default="fleet.db", help="an existing database (default %(default)s)")
    k.add_argument("--create", action="store_true", help="create the database if it does not exist")
    k.add_argument("terminal", type=types.terminal)
    k.add_argument("hex", type=types.key_hex, metavar="HEX", help="the key, hex, at least 16 bytes")
    cli_web.add_parsers(sub)
    cli_records.add_parsers(sub)
    return p


def load_keys(path):
    """Keys from a file: a JSON object {tid: hex} or lines 'tid hex'."""
    try:
        return types.keys_file(str(path))
    except argparse.ArgumentTypeError as e:
        raise ValueError(str(e))


def cmd_run(a):
    from tools.headend.service import Headend

    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    Headend(a.broker, a.db, a.prefix, a.share, a.heartbeat_s, a.client_id, a.check_s).run()
    return 0


def _status_json(fleet, incs, tz):
    by_tid = {}
    for i in incs:
        by_tid.setdefault(i["tid"], []).append(dict(i, first_seen_at=view.stamp(i["first_seen"], tz)))
    for t in fleet:
        t["last_seen_at"] = view.stamp(t["last_seen"], tz)
        t["last_hb_at"] = view.stamp(t["last_hb"], tz)
        t["incarnations"] = by_tid.get(t["tid"], [])
    return json.dumps(fleet, indent=1)


def cmd_status(a):
    store = open_store(a.db)
    try:
        everyone = store.fleet(time.time(), a.heartbeat_s)
        fleet = [t for t in everyone if a.state is None or t["state"] == a.state]
        shown = {t["tid"] for t in fleet}
        incs = [i for i in store.incarnations() if i["tid"] in shown]
        if a.json:
            print(_status_json(fleet, incs, a.tz))
            return 0
        print(view.table(fleet, tz=a.tz))
        print("\nterminals: " + view.state_counts(everyone) + ("; shown: %s" % a.state if a.state else ""))
        c = store.counters()
        print("records stored %d, duplicates %d, conflicts %d, invalid %d, heartbeats %d"
              % (c.get("stored", 0), c.get("duplicate", 0), c.get("conflict", 0), c.get("invalid", 0),
                 c.get("heartbeat", 0)))
        if c.get("conflict"):
            print("%s had the terminal, incarnation and seq of a stored record but other content: "
                  "kept in table conflicts" % view.plural(c["conflict"], "record"))
        several = {i["tid"] for i in incs if i["missing"]} | {
            t for t in shown if sum(1 for i in incs if i["tid"] == t) > 1}
        if several:
            print("outbox incarnations (records and gaps, per terminal, oldest first):")
            for i in incs:
                if i["tid"] in several:
                    print("  " + view.incarnation_line(i))
        for name in sorted(n for n in c if n.startswith("warning ")):
            print("accepted with a deviation (%d): %s" % (c[name], name[8:]))
    finally:
        store.close()
    return 0


def cmd_query(a):
    from tools.headend.query import op_for, send_command

    try:
        op, cmd_args = op_for(a.what)
    except ValueError as e:
        print("%s query: error: argument what: %s" % (PROG, e), file=sys.stderr)
        return 2
    store = open_store(a.db) if a.db else None
    try:
        key = a.key
        if key is None and a.keys:
            key = a.keys.get(a.terminal)
        if key is None and store is not None:
            key = store.key(a.terminal)
        if key is None:
            print("query: no command key for %s (give --key, --keys or store one with `key`)" % a.terminal,
                  file=sys.stderr)
            return 2
        try:
            resp = send_command(a.broker, a.terminal, key, op, cmd_args, a.prefix, a.timeout)
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


def cmd_update(a):
    from tools.headend.updates import Rollout

    store = open_store(a.db) if a.db else None
    try:
        keys, missing = {}, []
        for tid in a.terminals:
            key = a.key or (a.keys or {}).get(tid) or (store.key(tid) if store is not None else None)
            if key is None:
                missing.append(tid)
            keys[tid] = key
    finally:
        if store is not None:
            store.close()
    if missing:
        print("update: no command key for %s (give --key, --keys or store one with `key`)" % ", ".join(missing),
              file=sys.stderr)
        return 2
    b = a.bundle
    print("offering %s (%d bytes) to %s" % (b.ver, b.size, view.plural(len(keys), "terminal")))
    try:
        outcome = Rollout(a.broker, b, a.prefix, a.downgrade).run(keys, a.timeout)
    except TimeoutError as e:
        print("update: %s" % e, file=sys.stderr)
        return 2
    ok = sum(1 for s in outcome.values() if s.get("state") == "confirmed")
    print("%s: %d of %d confirmed" % (b.ver, ok, len(outcome)))
    return 0 if ok == len(outcome) else 1


def cmd_report(a):
    if a.t_to <= a.t_from:
        print("%s report: error: argument --to: %s is not after --from %s"
              % (PROG, report.iso(a.t_to), report.iso(a.t_from)), file=sys.stderr)
        return 2
    store = open_store(a.db)
    try:
        rep = report.compute(store, a.t_from, a.t_to, grid_deg=a.grid, regions=a.regions, tz=a.tz)
    finally:
        store.close()
    from tools.headend import mapimg

    base = Path(a.out)
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [mapimg.draw(rep, base.with_suffix(".png"), size=a.size),
             report.write_csv(rep, base.with_suffix(".csv")),
             report.write_meters_csv(rep, base.parent / (base.name + "-meters.csv"))]
    frozen = sum(1 for m in rep["meters"] if m["source"] == "frozen")
    print("energy %s .. %s: %s kWh from %d meters in %d regions (%d meters skipped); %d meter(s) from frozen values,"
          " %d from live readings%s" % (report.iso(a.t_from), report.iso(a.t_to), rep["total_kwh"], len(rep["meters"]),
                                        len(rep["regions"]), len(rep["skipped"]), frozen, len(rep["meters"]) - frozen,
                                        "" if rep["days"] else " (%s)" % report.NOT_WHOLE_DAYS))
    for p in paths:
        print(p)
    return 0


def _days_checked(a):
    if a.d_to < a.d_from:
        print("%s %s: error: argument --to: %s is before --from %s" % (PROG, a.cmd, a.d_to, a.d_from),
              file=sys.stderr)
        return False
    return True


def cmd_days(a):
    from tools.headend import meter_records

    if not _days_checked(a):
        return 2
    store = open_store(a.db)
    try:
        rep = meter_records.day_energy(store, a.d_from, a.d_to)
    finally:
        store.close()
    if a.json:
        print(json.dumps(rep, default=str, indent=1))
        return 0
    for d in rep["days"]:
        gaps = sum(1 for v in d["meters"].values() if v is None)
        print("%s  %12s kWh%s" % (d["date"], d["kwh"], "  (%d meter(s) without both freezes)" % gaps if gaps else ""))
    print("%s .. %s  %12s kWh (from the freezes at both ends)" % (a.d_from, a.d_to, rep["period_kwh"]))
    return 0


def cmd_completeness(a):
    from tools.headend import meter_records

    if not _days_checked(a):
        return 2
    store = open_store(a.db)
    try:
        rows = meter_records.completeness(store, a.d_from, a.d_to)
    finally:
        store.close()
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print("%s  %d/%d  %5.1f %%%s" % (r["date"], r["have"], r["meters"], r["pct"],
                                        "  missing: " + " ".join(r["missing"]) if r["missing"] else ""))
    return 0


def cmd_events(a):
    from tools.headend import meter_records

    store = open_store(a.db)
    try:
        rows = meter_records.events(store, tid=a.terminal, meter=a.meter, kind=a.kind)
    finally:
        store.close()
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        extra = {k: v for k, v in r["data"].items() if k not in ("start", "end", "at")}
        print("%-19s %-19s %s %-15s #%-4d %s %s" % (r["start"] or "", r["end"] or "", r["meter"], r["kind"], r["n"],
                                                  r["tid"], json.dumps(extra) if extra else ""))
    print("%d event(s)" % len(rows))
    return 0


def cmd_key(a):
    if not a.create:
        try:
            types.existing_db(a.db)
        except argparse.ArgumentTypeError as e:
            print("%s key: error: argument --db: %s; give --create to start a new one" % (PROG, e),
                  file=sys.stderr)
            return 2
    elif not is_dsn(a.db) and not Path(a.db).exists() and not Path(a.db).parent.is_dir():
        print("%s key: error: argument --db: folder %s does not exist" % (PROG, Path(a.db).parent), file=sys.stderr)
        return 2
    store = open_store(a.db)
    try:
        known = store.terminal(a.terminal) is not None
        store.set_key(a.terminal, a.hex)
    finally:
        store.close()
    print("key stored for %s%s" % (a.terminal, "" if known else " (a terminal not seen yet in this database)"))
    return 0


def main(argv=None):
    try:
        a = parser().parse_args(argv)
    except SystemExit as e:
        # argparse has printed the message naming the argument (or the help)
        return e.code if isinstance(e.code, int) else 2
    try:
        mqttconn.resolve(a)  # the account and TLS options checked together, before anything connects
    except argparse.ArgumentError as e:
        print("%s %s: error: %s" % (PROG, a.cmd, e), file=sys.stderr)
        return 2
    try:
        return {"run": cmd_run, "status": cmd_status, "query": cmd_query, "report": cmd_report,
                "key": cmd_key, "days": cmd_days, "completeness": cmd_completeness, "events": cmd_events,
                "update": cmd_update, **cli_web.COMMANDS, **cli_records.COMMANDS}[a.cmd](a)
    except (ValueError, OSError) as e:
        print("%s: %s" % (a.cmd, e), file=sys.stderr)
        return 2


def entry():
    """The console script `bdmeter-headend`."""
    sys.exit(main())
