"""The asset register: which meter is the supply or a customer meter of which transformer area (CSV import)."""

import csv
import re
import time

ROLES = ("supply", "customer")
HEADER = ("meter", "area", "role", "customer")
_METER = re.compile(r"^\d{12}$")
_AREA = re.compile(r"^[^\x00-\x1f]{1,64}$")

TABLES = """
CREATE TABLE IF NOT EXISTS assets(
    meter TEXT PRIMARY KEY, area TEXT NOT NULL, role TEXT NOT NULL, customer TEXT, updated REAL, updated_by TEXT);
CREATE INDEX IF NOT EXISTS assets_area ON assets(area, role);
"""


def ensure(store):
    with store.tx() as db:
        for s in TABLES.split(";"):
            if s.strip():
                db.execute(s)


def parse_csv(text, where="assets.csv"):
    """Rows (meter, area, role, customer) from CSV text with the header meter,area,role,customer.

    Every problem raises ValueError naming the line; an area needs exactly one supply meter."""
    rows, seen, supply = [], set(), {}
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header[:4]) != HEADER:
        raise ValueError("%s: the first line must be %s" % (where, ",".join(HEADER)))
    for n, rec in enumerate(reader, start=2):
        if not rec or not any(x.strip() for x in rec):
            continue
        if len(rec) < 3:
            raise ValueError("%s line %d: needs meter, area, role and customer" % (where, n))
        meter, area, role = rec[0].strip(), rec[1].strip(), rec[2].strip().lower()
        customer = rec[3].strip() if len(rec) > 3 else ""
        if not _METER.match(meter):
            raise ValueError("%s line %d: meter %r is not a 12-digit address" % (where, n, meter[:20]))
        if not _AREA.match(area):
            raise ValueError("%s line %d: the area name is empty, too long or has control characters" % (where, n))
        if role not in ROLES:
            raise ValueError("%s line %d: role %r is not supply or customer" % (where, n, role[:20]))
        if meter in seen:
            raise ValueError("%s line %d: meter %s is listed twice" % (where, n, meter))
        if role == "supply":
            if area in supply:
                raise ValueError("%s line %d: area %s has a second supply meter (%s and %s)"
                                 % (where, n, area, supply[area], meter))
            supply[area] = meter
        seen.add(meter)
        rows.append((meter, area, role, customer or None))
    for area in sorted({r[1] for r in rows} - set(supply)):
        raise ValueError("%s: area %s has no supply meter" % (where, area))
    return rows


def import_csv(store, text, who="cli", replace=True, where="assets.csv"):
    """Load the register from CSV text (all or nothing); with `replace` the old register goes. Returns the count."""
    rows = parse_csv(text, where)
    ensure(store)
    now = time.time()
    with store.tx() as db:
        if replace:
            db.execute("DELETE FROM assets")
        db.executemany("INSERT INTO assets(meter, area, role, customer, updated, updated_by) VALUES(?,?,?,?,?,?)"
                       " ON CONFLICT(meter) DO UPDATE SET area = excluded.area, role = excluded.role,"
                       " customer = excluded.customer, updated = excluded.updated, updated_by = excluded.updated_by",
                       [r + (now, who) for r in rows])
    return len(rows)


def areas(store):
    """{area: {"supply": meter, "customers": [(meter, customer id)]}} of the register."""
    ensure(store)
    out = {}
    for r in store.query("SELECT meter, area, role, customer FROM assets ORDER BY area, role DESC, meter"):
        a = out.setdefault(r["area"], {"supply": None, "customers": []})
        if r["role"] == "supply":
            a["supply"] = r["meter"]
        else:
            a["customers"].append((r["meter"], r["customer"]))
    return out


def listing(store):
    """Every meter of the register with its terminal and position (newest registration listing it)."""
    ensure(store)
    out = []
    for r in store.query("SELECT meter, area, role, customer, updated, updated_by FROM assets ORDER BY area, role"
                         " DESC, meter"):
        reg = store.query("SELECT g.tid, g.lat, g.lon FROM registration_meters m JOIN registrations g ON g.tid ="
                          " m.tid AND g.inc = m.inc AND g.seq = m.seq WHERE m.meter = ? ORDER BY g.received DESC"
                          " LIMIT 1", (r["meter"],))
        out.append(dict(r, tid=reg[0]["tid"] if reg else None, lat=reg[0]["lat"] if reg else None,
                        lon=reg[0]["lon"] if reg else None))
    return out


def to_csv(store):
    rows = listing(store)
    lines = [",".join(HEADER)]
    for r in rows:
        lines.append(",".join([r["meter"], _q(r["area"]), r["role"], _q(r["customer"] or "")]))
    return "\n".join(lines) + "\n"


def _q(s):
    return '"%s"' % s.replace('"', '""') if any(c in s for c in ',"\n') else s
