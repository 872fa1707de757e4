"""The head-end's dashboard-side commands: serve, user, assets, lineloss (parsers and handlers for cli.py)."""

import logging
import sys
from decimal import Decimal

from tools.headend import args as types
from tools.headend.pgstore import open_store

PROG = "bdmeter-headend"


def add_parsers(sub):
    w = sub.add_parser("serve", help="the web dashboard: map, fleet, terminals, alarms, report, commands")
    w.add_argument("--db", type=types.existing_db, default="fleet.db", help="default %(default)s")
    w.add_argument("--bind", type=types.broker, default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="address to listen on (default %(default)s)")
    w.add_argument("--broker", type=types.broker, help="host:port of the broker, for operator commands")
    from tools.headend import mqttconn

    mqttconn.add_options(w)
    w.add_argument("--prefix", type=types.ident("topic prefix"), default="bdmeter", help="default %(default)s")
    w.add_argument("--tz", type=types.zone, default=types.zone("Asia/Shanghai"), metavar="ZONE",
                   help="times shown in this IANA zone (default Asia/Shanghai)")
    w.add_argument("--tiles", type=types.tile_url, metavar="URL", help="basemap tile URL with {z}/{x}/{y} "
                   "(e.g. a tile server on the LAN); none by default")
    w.add_argument("--tiles-attribution", default="", help="text credited under the basemap")
    w.add_argument("--regions", type=types.regions, metavar="FILE", help="GeoJSON regions shaded on the map and "
                   "used by the report (default: a grid)")
    w.add_argument("--grid", type=types.grid_deg, default=0.02, metavar="DEG", help="grid cell size without "
                   "--regions (default %(default)s)")
    w.add_argument("--heartbeat-s", type=types.positive_seconds(7 * 86400),
                   help="heartbeat period for terminals whose period is not learned yet")
    w.add_argument("--command-timeout", type=types.positive_seconds(600), default=20.0,
                   help="seconds to wait for a terminal's answer (default %(default)s)")

    u = sub.add_parser("user", help="dashboard users: add (or --replace), remove, list")
    u.add_argument("action", choices=("add", "remove", "list"))
    u.add_argument("name", nargs="?")
    u.add_argument("--db", type=types.existing_db, default="fleet.db", help="default %(default)s")
    u.add_argument("--role", choices=("viewer", "operator", "admin"), default="viewer", help="default %(default)s")
    u.add_argument("--replace", action="store_true", help="change an existing user's role and password")
    u.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input instead of asking")

    s = sub.add_parser("assets", help="the asset register: import a CSV (meter,area,role,customer) or export it")
    s.add_argument("action", choices=("import", "export"))
    s.add_argument("file", nargs="?", help="CSV to import (header meter,area,role,customer; role supply|customer)")
    s.add_argument("--db", type=types.existing_db, default="fleet.db", help="default %(default)s")

    g = sub.add_parser("lineloss", help="line-loss rate per transformer area and period, flagged above a threshold")
    g.add_argument("--db", type=types.existing_db, default="fleet.db", help="default %(default)s")
    g.add_argument("--from", dest="t_from", type=types.when, required=True, help="ISO date/time (UTC unless zoned)")
    g.add_argument("--to", dest="t_to", type=types.when, required=True, help="ISO date/time, after --from")
    g.add_argument("--step", choices=("day", "whole"), default="day",
                   help="one rate per local day (default), or one for the whole period")
    g.add_argument("--tz", type=types.zone, default=types.zone("Asia/Shanghai"), metavar="ZONE",
                   help="zone of the days (default Asia/Shanghai)")
    g.add_argument("--threshold", type=types.number_in(0, 100, "the loss rate threshold in percent"), default=10.0,
                   metavar="PCT", help="flag areas whose loss rate is above PCT percent (default %(default)s)")
    g.add_argument("--csv", metavar="PATH", help="also write the rows as CSV")

    from tools.headend.retention import DEFAULT_DAYS, TABLES

    r = sub.add_parser("prune", help="retention: delete rows older than N days per kind")
    r.add_argument("--db", type=types.existing_db, default="fleet.db", help="default %(default)s")
    for kind in TABLES:
        r.add_argument("--%s-days" % kind, dest=kind, type=types.positive_seconds(36500, "days"),
                       default=DEFAULT_DAYS.get(kind), metavar="N",
                       help="keep %s for N days (default %s)" % (kind, DEFAULT_DAYS.get(kind, "forever")))


def cmd_serve(a):
    from tools.headend import webapp

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = webapp.Settings(a.db, broker=a.broker, prefix=a.prefix, tz=a.tz, tiles=a.tiles,
                               tiles_attribution=a.tiles_attribution, regions=a.regions,
                               command_timeout_s=a.command_timeout, heartbeat_s=a.heartbeat_s,
                               secret=webapp.env_secret(), grid_deg=a.grid)
    host, port = a.bind.rsplit(":", 1)
    try:
        webapp.serve(settings, host, int(port))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_user(a):
    import getpass

    from tools.headend import users

    store = open_store(a.db)
    try:
        users.ensure(store)
        if a.action == "list":
            for u in users.users(store):
                print("%-20s %s" % (u["name"], u["role"]))
            return 0
        if not a.name:
            print("%s user: error: argument name: give the user's name" % PROG, file=sys.stderr)
            return 2
        if a.action == "remove":
            if not users.remove_user(store, a.name):
                print("%s user: no user %s" % (PROG, a.name), file=sys.stderr)
                return 1
            print("user %s removed" % a.name)
            return 0
        if a.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("password for %s: " % a.name)
            if getpass.getpass("again: ") != password:
                print("%s user: the passwords differ" % PROG, file=sys.stderr)
                return 2
        try:
            users.add_user(store, a.name, a.role, password, replace=a.replace)
        except ValueError as e:
            print("%s user: error: %s" % (PROG, e), file=sys.stderr)
            return 2
        print("user %s (%s) %s" % (a.name, a.role, "updated" if a.replace else "added"))
        return 0
    finally:
        store.close()




def cmd_assets(a):
    from tools.headend import assets

    store = open_store(a.db)
    try:
        if a.action == "export":
            sys.stdout.write(assets.to_csv(store))
            return 0
        if not a.file:
            print("%s assets: error: argument file: give the CSV to import" % PROG, file=sys.stderr)
            return 2
        try:
            with open(a.file, encoding="utf-8-sig") as f:
                n = assets.import_csv(store, f.read(), who="cli", where=a.file)
        except ValueError as e:
            print("%s assets: error: %s" % (PROG, e), file=sys.stderr)
            return 2
        print("asset register: %d meters in %d areas" % (n, len(assets.areas(store))))
        return 0
    finally:
        store.close()


def cmd_lineloss(a):
    from tools.headend import lineloss, report

    if a.t_to <= a.t_from:
        print("%s lineloss: error: argument --to: not after --from" % PROG, file=sys.stderr)
        return 2
    store = open_store(a.db)
    try:
        rows = lineloss.compute(store, a.t_from, a.t_to, a.tz, a.step, Decimal(str(a.threshold)) / 100)
    finally:
        store.close()
    if not rows:
        print("no areas: import an asset register first (%s assets import FILE.csv)" % PROG)
        return 1
    print("%-24s %-20s %12s %12s %10s %8s" % ("area", "period from (UTC)", "supply kWh", "customers", "loss kWh",
                                               "rate"))
    for r in rows:
        print("%-24s %-20s %12s %12s %10s %8s%s" % (
            r["area"], report.iso(r["from"]), r["supply_kwh"] if r["supply_kwh"] is not None else "-",
            r["customers_kwh"], r["loss_kwh"] if r["loss_kwh"] is not None else "-", lineloss.percent(r["rate"]),
            "  FLAGGED" if r["flagged"] else ("  incomplete: " + "; ".join(r["missing"]) if r["missing"] else "")))
    if a.csv:
        lineloss.write_csv(rows, a.csv, report.iso)
        print(a.csv)
    return 0


def cmd_prune(a):
    from tools.headend.retention import TABLES, prune

    store = open_store(a.db)
    try:
        done = prune(store, {k: getattr(a, k) for k in TABLES})
    finally:
        store.close()
    print("deleted: " + (", ".join("%s %d" % kv for kv in done.items()) or "nothing (no retention given)"))
    return 0


COMMANDS = {"serve": cmd_serve, "user": cmd_user, "assets": cmd_assets, "lineloss": cmd_lineloss,
            "prune": cmd_prune}
