"""Retention: delete stored rows older than a number of days, per kind (heartbeats, rejects, ... readings)."""

import time

# kind -> (table, time column); readings by arrival, so a reading stamped long ago but stored late stays
TABLES = {
    "heartbeats": ("heartbeats", "received"),
    "rejects": ("rejects", "at"),
    "transitions": ("transitions", "at"),
    "responses": ("responses", "received"),
    "events": ("events", "received"),
    "readings": ("readings", "received"),
}
# defaults of `prune`: health data for a quarter, what is evidence (events, readings) kept unless asked
DEFAULT_DAYS = {"heartbeats": 90, "rejects": 90, "transitions": 365, "responses": 365}


def prune(store, days, now=None):
    """Delete the rows of each kind older than days[kind] days (None or absent: keep); return {kind: deleted}.

    The records' keys stay (exactly-once needs them), so a record redelivered after its row was pruned is still
    recognised as a duplicate and not stored again."""
    now = time.time() if now is None else now
    out = {}
    for kind, n in days.items():
        if n is None:
            continue
        if kind not in TABLES:
            raise ValueError("unknown kind %r (one of %s)" % (kind, ", ".join(TABLES)))
        if n <= 0:
            raise ValueError("%s: the retention must be a positive number of days" % kind)
        table, col = TABLES[kind]
        with store.tx() as db:
            out[kind] = db.execute("DELETE FROM %s WHERE %s < ?" % (table, col), (now - n * 86400,)).rowcount
    return out
