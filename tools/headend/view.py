"""The fleet as a text table: terminal, meters, position, last energy, last seen (in a named zone), state."""

import time
from datetime import datetime, timezone

COLUMNS = ("terminal", "meter(s)", "position", "energy kWh", "last seen", "state")
STATES = ("online", "silent", "offline", "unknown")


def zone_name(tz):
    """The zone's name as a person reads it: UTC or the IANA key (Asia/Shanghai)."""
    return getattr(tz, "key", None) or tz.tzname(None) or "UTC"


def stamp(t, tz=timezone.utc):
    """A Unix time as ISO 8601 with the zone's offset, e.g. 2026-11-24T08:00:00+08:00."""
    return None if t is None else datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")


def _ago(now, t, tz):
    if t is None:
        return "never"
    s = max(0, int(now - t))
    local = datetime.fromtimestamp(t, tz)
    if s < 120:
        return "%s (%ds ago)" % (local.strftime("%H:%M:%S"), s)
    if s < 7200:
        return "%s (%dm ago)" % (local.strftime("%H:%M:%S"), s // 60)
    return local.strftime("%Y-%m-%d %H:%M") + " (%dh ago)" % (s // 3600)


def rows(fleet, now=None, tz=timezone.utc):
    """Table cells (strings) for each terminal of Store.fleet()."""
    now = time.time() if now is None else now
    out = []
    for t in fleet:
        pos = "%.5f,%.5f" % (t["lat"], t["lon"]) if t["lat"] is not None else "-"
        kwh = ["%.2f" % t["energy"][m]["fwd"] for m in t["meters"]
               if m in t["energy"] and t["energy"][m]["fwd"] is not None]
        out.append((t["tid"], " ".join(t["meters"]) or "-", pos, " ".join(kwh) or "-",
                    _ago(now, t["last_seen"], tz), t["state"]))
    return out


def table(fleet, now=None, tz=timezone.utc):
    """The whole table as text; times in zone `tz`, named in the header."""
    body = rows(fleet, now, tz)
    cols = COLUMNS[:4] + ("last seen (%s)" % zone_name(tz),) + COLUMNS[5:]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(cols)]
    line = "  ".join("%-*s" % (w, c) for w, c in zip(widths, cols))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in body:
        out.append("  ".join("%-*s" % (w, c) for w, c in zip(widths, r)))
    if not body:
        out.append("(no terminals yet)")
    return "\n".join(out)


def plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def state_counts(fleet):
    """'3 online, 1 silent, 0 offline, 0 unknown (4 terminals)'."""
    n = {s: 0 for s in STATES}
    for t in fleet:
        n[t["state"]] = n.get(t["state"], 0) + 1
    return "%s (%s)" % (", ".join("%d %s" % (v, k) for k, v in n.items()), plural(len(fleet), "terminal"))


def incarnation_line(i):
    """One outbox incarnation of a terminal: records, seq range, missing seqs."""
    name = i["inc"] or "(none, v1)"
    text = "%s inc %s: %s, seq %d..%d" % (i["tid"], name, plural(i["records"], "record"), i["first_seq"],
                                          i["last_seq"])
    if i["missing"]:
        text += ", %d missing: %s" % (i["missing"], " ".join(
            "%d" % a if a == b else "%d-%d" % (a, b) for a, b in i["gaps"]))
        if sum(b - a + 1 for a, b in i["gaps"]) < i["missing"]:
            text += " ..."
    return text
