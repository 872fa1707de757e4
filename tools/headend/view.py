"""The fleet as a text table: terminal, meters, position, last energy, last seen, state."""

import time
from datetime import datetime, timezone

COLUMNS = ("terminal", "meter(s)", "position", "energy kWh", "last seen", "state")


def _ago(now, t):
    if t is None:
        return "never"
    s = max(0, int(now - t))
    stamp = datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S")
    if s < 120:
        return "%s (%ds ago)" % (stamp, s)
    if s < 7200:
        return "%s (%dm ago)" % (stamp, s // 60)
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M") + " (%dh ago)" % (s // 3600)


def rows(fleet, now=None):
    """Table cells (strings) for each terminal of Store.fleet()."""
    now = time.time() if now is None else now
    out = []
    for t in fleet:
        pos = "%.5f,%.5f" % (t["lat"], t["lon"]) if t["lat"] is not None else "-"
        kwh = ["%.2f" % t["energy"][m]["fwd"] for m in t["meters"]
               if m in t["energy"] and t["energy"][m]["fwd"] is not None]
        out.append((t["tid"], " ".join(t["meters"]) or "-", pos, " ".join(kwh) or "-",
                    _ago(now, t["last_seen"]), t["state"]))
    return out


def table(fleet, now=None):
    """The whole table as text."""
    body = rows(fleet, now)
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(COLUMNS)]
    line = "  ".join("%-*s" % (w, c) for w, c in zip(widths, COLUMNS))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in body:
        out.append("  ".join("%-*s" % (w, c) for w, c in zip(widths, r)))
    if not body:
        out.append("(no terminals yet)")
    return "\n".join(out)
