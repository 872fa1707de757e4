"""The messages of docs/PROTOCOL.md (version 2): topic names and compact JSON bodies."""

import json

from firmware import VERSION

V = 2
WILL = b'{"v":2,"state":"offline"}'

# DI -> key in the energy message's "kwh" object (DL/T 645-2007 data identifiers)
ENERGY_DIS = (
    (0x00010000, "fwd"),
    (0x00010100, "t1"),
    (0x00010200, "t2"),
    (0x00010300, "t3"),
    (0x00010400, "t4"),
    (0x00020000, "rev"),
    (0x00000000, "comb"),
)
COMBINED_DI = 0x00000000  # signed: the top bit of the top byte
FWD_BLOCK_DI = 0x0001FF00  # forward active total then tariffs 1..4, in one reply
# instantaneous item -> DIs read for it (per phase where the meter has phases)
INST_DIS = {
    "v": (0x02010100, 0x02010200, 0x02010300),
    "i": (0x02020100, 0x02020200, 0x02020300),
    "p": (0x02030000,),
    "pf": (0x02060000,),
    "f": (0x02800002,),
}


def topic(prefix, tid, leaf):
    return "%s/%s/%s" % (prefix, tid, leaf)


class Fixed:
    """An exact decimal with `places` digits after the point, kept as an integer count of 10**-places.

    Boards run MicroPython with 32-bit floats: 123456.78 kWh as a float would reach the server as
    123456.8, and 8957 / 10000 kW picks up float noise. Values read as BCD stay integers from the
    meter's bytes to the JSON text, written with the meter's own number of decimals.
    """

    __slots__ = ("n", "places")

    def __init__(self, n, places):
        self.n = n
        self.places = places

    def __eq__(self, other):
        if not isinstance(other, Fixed):
            return False
        return self.n * 10 ** other.places == other.n * 10 ** self.places

    def __float__(self):
        return self.n / 10 ** self.places

    def __repr__(self):
        return "Fixed(%s)" % self.text()

    def text(self):
        n, p = self.n, self.places
        sign = "-" if n < 0 else ""
        n = abs(n)
        if not p:
            return sign + str(n)
        scale = 10 ** p
        frac = str(n % scale)
        return "%s%d.%s%s" % (sign, n // scale, "0" * (p - len(frac)), frac)


def Centi(n):  # noqa: N802 - reads like the class it used to be
    """An energy register (XXXXXX.XX kWh) from its integer number of hundredths."""
    return Fixed(n, 2)


def fixed(pair):
    """A Fixed (or a list of them) from dlt645.fixed's (int or [int, ...], decimals)."""
    n, places = pair
    if isinstance(n, list):
        return [Fixed(k, places) for k in n]
    return Fixed(n, places)


def dumps(obj):
    """Compact JSON, with Fixed values written exactly."""
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + dumps(v) for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    if isinstance(obj, Fixed):
        return obj.text()
    return json.dumps(obj)


def status_online(ts, tsrc):
    return dumps({"v": V, "state": "online", "fw": VERSION, "ts": ts, "tsrc": tsrc})


def register(ts, tsrc, why, meters, pos, imei, iccid, csq):
    """The patent's packed message: meter address(es) with the position. `inc` and `seq` are added by the outbox."""
    return {"v": V, "ts": ts, "tsrc": tsrc, "why": why, "meters": list(meters), "pos": pos,
            "imei": imei, "iccid": iccid, "fw": VERSION, "csq": csq}


def energy(ts, tsrc, meter, kwh, inst=None):
    body = {"v": V, "ts": ts, "tsrc": tsrc, "meter": meter, "kwh": kwh}
    if inst:
        body["inst"] = inst
    return body


def event(ts, tsrc, kind, data=None):
    return {"v": V, "ts": ts, "tsrc": tsrc, "kind": kind, "data": data or {}}


def heartbeat(ts, tsrc, up, csq, fix, outbox, full=None):
    """The short heartbeat; `full` (a dict: nsat, heap, heap_peak, reset, err) makes it the full one."""
    body = {"v": V, "ts": ts, "tsrc": tsrc, "up": up, "csq": csq, "fix": fix, "outbox": outbox}
    if full:
        body.update(full)
    return body


def resp(req_id, ts, tsrc, result=None, error=None):
    body = {"v": V, "id": req_id, "ok": error is None, "ts": ts, "tsrc": tsrc}
    if error is None:
        body["result"] = result if result is not None else {}
    else:
        body["error"] = error
    return dumps(body)


def frozen(ts, tsrc, meter, date, at, fwd, rev=None):
    """A meter's daily freeze: `date` the day it froze (at 00:00 meter time), `at` its own freeze stamp."""
    body = {"v": V, "ts": ts, "tsrc": tsrc, "meter": meter, "date": date, "at": at, "fwd": fwd}
    if rev is not None:
        body["rev"] = rev
    return body


def meter_event(ts, tsrc, meter, kind, n, data):
    """One event the meter logged: `kind`, `n` its ordinal in the meter's count, `data` what the record says."""
    body = {"v": V, "ts": ts, "tsrc": tsrc, "meter": meter, "kind": kind, "n": n}
    body.update(data)
    return body
