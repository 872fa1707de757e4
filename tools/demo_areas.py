"""The demo's two transformer areas: a supply meter at the transformer and three customer meters each, simulated
on one bus read by one terminal. Area TA-01 loses a normal 6 % of what it supplies; in TA-02 one customer meter
registers only 60 % of its load, so that area's loss rate stands out.

Loads have no noise and every meter's daily swing is the same fraction of its base, so each meter's power is its
base times one common curve: the rates follow from the bases alone (see `expected_rate`), which is what the
test compares the head-end's figures with, beside the simulator's own registers.
"""

from decimal import Decimal

from tools.sim.meter_model import MeterSpec

SWING = 2 / 3  # daily swing as a fraction of the base load, the same for every meter of the areas

# area -> (technical loss as a fraction of the customers' true load, [(address, customer id, base kW, registers)])
# `registers` is the fraction of its true load the meter records (1.0 for a sound meter)
AREAS = {
    "TA-01 Xincheng": (0.06, [("000090000101", "C-1001", 1.0, 1.0), ("000090000102", "C-1002", 1.5, 1.0),
                              ("000090000103", "C-1003", 2.0, 1.0)]),
    "TA-02 Saihan": (0.05, [("000090000201", "C-2001", 1.2, 1.0), ("000090000202", "C-2002", 0.8, 1.0),
                            ("000090000203", "C-2003", 2.5, 0.6)]),
}
SUPPLY = {"TA-01 Xincheng": "000090000100", "TA-02 Saihan": "000090000200"}
THRESHOLD = Decimal("0.10")


def specs(area):
    """The area's MeterSpecs: the supply meter first (it sees the customers' true load plus the losses)."""
    loss, customers = AREAS[area]
    true_total = sum(b for _, _, b, _ in customers)
    out = [MeterSpec(address=SUPPLY[area], base_kw=(1 + loss) * true_total, swing_kw=(1 + loss) * true_total * SWING,
                     noise_kw=0.0, start_kwh=5000.0)]
    for i, (addr, _cust, base, reg) in enumerate(customers):
        out.append(MeterSpec(address=addr, base_kw=base * reg, swing_kw=base * reg * SWING, noise_kw=0.0,
                             start_kwh=1000.0 + 100 * i))
    return out


def expected_rate(area):
    """(supply - registered customers) / supply from the loads: 1 - sum(base * registers) / ((1 + loss) * sum(base))."""
    loss, customers = AREAS[area]
    return 1 - sum(b * r for _, _, b, r in customers) / ((1 + loss) * sum(b for _, _, b, _ in customers))


def register_csv():
    """The asset register of both areas as CSV (meter,area,role,customer)."""
    lines = ["meter,area,role,customer"]
    for area, (_loss, customers) in AREAS.items():
        lines.append("%s,%s,supply," % (SUPPLY[area], area))
        lines += ["%s,%s,customer,%s" % (addr, area, cust) for addr, cust, _, _ in customers]
    return "\n".join(lines) + "\n"
