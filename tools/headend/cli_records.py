"""The head-end's command for the meters' monthly settlements: `settlements` (parser and handler for cli.py)."""

import json
import sys

from tools.headend import args as types
from tools.headend.pgstore import open_store

PROG = "bdmeter-headend"


def add_parsers(sub):
    s = sub.add_parser("settlements", help="the meters' own monthly settlements (结算日), oldest first per meter, "
                       "with the energy since each meter's previous one")
    s.add_argument("--db", type=types.existing_db, default="fleet.db", help="default %(default)s")
    s.add_argument("--meter", help="only this meter (12 digits)")
    s.add_argument("--terminal", type=types.terminal, help="only the settlements this terminal sent")
    s.add_argument("--from", dest="d_from", type=types.day, help="first settlement date, YYYY-MM-DD")
    s.add_argument("--to", dest="d_to", type=types.day, help="last settlement date, YYYY-MM-DD")
    s.add_argument("--json", action="store_true", help="JSON instead of a table")


def cmd_settlements(a):
    from tools.headend import meter_records

    if a.d_from and a.d_to and a.d_to < a.d_from:
        print("%s settlements: error: argument --to: %s is before --from %s" % (PROG, a.d_to, a.d_from),
              file=sys.stderr)
        return 2
    store = open_store(a.db)
    try:
        rows = meter_records.settlements(store, meter=a.meter, tid=a.terminal, d_from=a.d_from, d_to=a.d_to)
    finally:
        store.close()
    if a.json:
        print(json.dumps(rows, default=str, indent=1))
        return 0
    for r in rows:
        print("%s %-16s fwd %12s  rev %10s  since previous %12s  %s"
              % (r["meter"], r["at"], r["fwd"][0], r["rev"][0] if r["rev"] else "-",
                 "-" if r["kwh"] is None else "%s kWh" % r["kwh"], r["tid"]))
    print("%d settlement(s)" % len(rows))
    return 0


COMMANDS = {"settlements": cmd_settlements}
