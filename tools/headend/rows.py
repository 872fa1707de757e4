"""A record's content as the row the store keeps, and a fingerprint of it to tell a redelivery from a conflict.

The fingerprint is computed from the stored columns (not the raw JSON), so it can also be computed for
rows stored before fingerprints existed (database migration) and gives the same value either way.
"""

import hashlib
import json

KWH_COLUMNS = ("fwd", "t1", "t2", "t3", "t4", "rev", "comb")

# the content columns of each record kind, in table order after (tid, inc, seq)
COLUMNS = {
    "register": ("ts", "tsrc", "why", "meters", "lat", "lon", "alt", "hdop", "nsat", "n", "imei", "iccid", "fw",
                 "csq"),
    "energy": ("meter", "ts", "tsrc") + KWH_COLUMNS + ("inst",),
    "event": ("ts", "tsrc", "kind", "data"),
}
TABLE = {"register": "registrations", "energy": "readings", "event": "events"}


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


def _real(x):
    # REAL columns give back floats: an integral JSON number must fingerprint like its float
    return None if x is None else float(x)


def content(kind, m):
    """The content columns (a tuple, in COLUMNS[kind] order) of a validated record `m`."""
    if kind == "register":
        pos = m.get("pos") or {}
        return (int(m["ts"]), m["tsrc"], m["why"], dumps(m["meters"]), _real(pos.get("lat")), _real(pos.get("lon")),
                _real(pos.get("alt")), _real(pos.get("hdop")), pos.get("nsat"), pos.get("n"), m.get("imei"),
                m.get("iccid"), m.get("fw"), m.get("csq"))
    if kind == "energy":
        kwh = m["kwh"]
        return ((m["meter"], int(m["ts"]), m["tsrc"]) + tuple(_real(kwh.get(k)) for k in KWH_COLUMNS)
                + (dumps(m["inst"]) if "inst" in m else None,))
    if kind == "event":
        return int(m["ts"]), m["tsrc"], m["kind"], dumps(m["data"])
    if kind in ("frozen", "meter_event", "settle"):
        # the whole record but its envelope: (tid, inc, seq) names it, and ts is when it was sent
        return (dumps({k: v for k, v in sorted(m.items()) if k not in ("v", "seq", "inc")}),)
    raise ValueError(kind)


def fingerprint(kind, values):
    """A short hash of a record's kind and content columns (as stored)."""
    norm = [float(v) if isinstance(v, float) else v for v in values]
    return hashlib.sha256((kind + "\n" + dumps(norm)).encode()).hexdigest()[:32]
