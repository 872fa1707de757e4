"""Line loss per transformer area: (supply - sum of customers) / supply for each period, areas above a threshold
flagged.

Each meter's energy in a period comes from `meter_period_energy`: over whole days of the meters' time zone
(UTC+8) the difference of its own midnight freezes when both are stored (`frozen_energy`, as the regional
report does), otherwise the register interpolated at the period's boundaries from the meter's readings
(energy.py: every meter is evaluated at the same instants, and consecutive periods add up exactly).
"""

from datetime import datetime, timedelta
from decimal import Decimal

from tools.headend import assets, meter_records, report
from tools.headend.energy import meter_energy

THRESHOLD = Decimal("0.10")  # a loss rate above 10 % is flagged (and any negative rate: customers > supply)


def frozen_energy(store, meter, t_from, t_to, tz=report.METER_TZ):
    """The meter's energy in [t_from, t_to] from its daily frozen values when both ends are frozen-value
    instants (the meters' midnights in `tz`) and the values are stored; None otherwise (then readings are
    interpolated)."""
    days = report.whole_days(t_from, t_to, tz)
    if days is None:
        return None
    e, _why = meter_records.frozen_energy(store, meter, days[0], days[1])
    return None if e is None else e["kwh"]


def meter_period_energy(store, meter, t_from, t_to):
    """(Decimal kWh, how) or (None, why) for one meter in one period."""
    e = frozen_energy(store, meter, t_from, t_to)
    if e is not None:
        return e, "frozen"
    e, why = meter_energy(store, meter, t_from, t_to)
    if e is None:
        return None, why
    if e["how_from"] == "held" or e["how_to"] == "held":
        return None, "no reading on both sides of a boundary (%s/%s)" % (e["how_from"], e["how_to"])
    return e["kwh"], "interpolated"


def periods(t_from, t_to, tz, step="day"):
    """Boundaries: local days (midnight to midnight in `tz`) covering [t_from, t_to), or the whole span."""
    if step == "whole":
        return [(t_from, t_to)]
    d = datetime.fromtimestamp(t_from, tz).date()
    out = []
    while True:
        a = datetime(d.year, d.month, d.day, tzinfo=tz)
        b = a + timedelta(days=1)
        if a.timestamp() >= t_to:
            break
        out.append((int(a.timestamp()), int(b.timestamp())))
        d += timedelta(days=1)
    return out


def area_loss(store, area, supply, customers, t_from, t_to, threshold=THRESHOLD):
    """One area in one period: supply and customers' kWh, loss kWh and rate, flag, and what was missing."""
    row = {"area": area, "from": t_from, "to": t_to, "supply_meter": supply, "customers": len(customers),
           "supply_kwh": None, "customers_kwh": None, "loss_kwh": None, "rate": None, "flagged": False,
           "missing": [], "meters": {}}
    s, why = meter_period_energy(store, supply, t_from, t_to) if supply else (None, "no supply meter")
    if s is None:
        row["missing"].append("%s (supply): %s" % (supply, why))
    total = Decimal("0.00")
    for meter, _cust in customers:
        e, why2 = meter_period_energy(store, meter, t_from, t_to)
        if e is None:
            row["missing"].append("%s: %s" % (meter, why2))
            continue
        row["meters"][meter] = e
        total += e
    row["customers_kwh"] = total
    if s is not None:
        row["meters"][supply] = s
        row["supply_kwh"] = s
        if not row["missing"] and s > 0:
            row["loss_kwh"] = s - total
            row["rate"] = (s - total) / s
            row["flagged"] = row["rate"] > threshold or row["rate"] < 0
    return row


def compute(store, t_from, t_to, tz, step="day", threshold=THRESHOLD):
    """Rows for every area of the register and every period; incomplete ones have rate None and say why."""
    out = []
    register = assets.areas(store)
    for a, b in periods(t_from, t_to, tz, step):
        for area, m in sorted(register.items()):
            out.append(area_loss(store, area, m["supply"], m["customers"], a, b, threshold))
    return out


def percent(rate):
    return "-" if rate is None else "%.2f %%" % (rate * 100)


def write_csv(rows, path_or_file, iso):
    import csv

    f = open(path_or_file, "w", newline="") if isinstance(path_or_file, str) else path_or_file
    try:
        w = csv.writer(f)
        w.writerow(["area", "period_from", "period_to", "supply_meter", "supply_kwh", "customers", "customers_kwh",
                    "loss_kwh", "loss_rate_percent", "flagged", "missing"])
        for r in rows:
            w.writerow([r["area"], iso(r["from"]), iso(r["to"]), r["supply_meter"] or "",
                        "" if r["supply_kwh"] is None else str(r["supply_kwh"]), r["customers"],
                        str(r["customers_kwh"]), "" if r["loss_kwh"] is None else str(r["loss_kwh"]),
                        "" if r["rate"] is None else "%.2f" % (r["rate"] * 100), "yes" if r["flagged"] else "no",
                        "; ".join(r["missing"])])
    finally:
        if isinstance(path_or_file, str):
            f.close()
    return path_or_file


def common_span(store):
    """(from, to) in which every meter of the register has readings on both sides of any instant: from the
    latest first reading to the earliest last reading; None without a register or readings."""
    firsts, lasts = [], []
    for m in [r["meter"] for r in store.query("SELECT meter FROM assets")]:
        r = store.query("SELECT min(ts) AS a, max(ts) AS b FROM readings WHERE meter = ? AND tsrc != 'none'"
                        " AND fwd IS NOT NULL", (m,))
        if r and r[0]["a"] is not None:
            firsts.append(r[0]["a"])
            lasts.append(r[0]["b"])
    if not firsts or max(firsts) >= min(lasts):
        return None
    return int(max(firsts)) + 1, int(min(lasts))
