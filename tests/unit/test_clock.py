"""UTC arithmetic without time zones, and the clock's sources."""

from firmware.clock import Clock, civil, epoch


def test_epoch_known_dates():
    assert epoch(1970, 1, 1) == 0
    assert epoch(2000, 1, 1) == 946684800
    assert epoch(2026, 11, 23, 10, 40, 0) == 1795430400
    assert epoch(2024, 2, 29, 23, 59, 59) == 1709251199


def test_civil_round_trip():
    for t in (0, 951782400, 1709251199, 1795430400, 4102444800):
        assert epoch(*civil(t)) == t
    assert civil(1795430400) == (2026, 11, 23, 10, 40, 0)


def test_clock_sources():
    c = Clock()
    assert c.set(1795430400, "gnss")
    assert c.source == "gnss" and c.trusted
    assert abs(c.now() - 1795430400) <= 1
    assert not c.set(1795430500, "net")  # GNSS is fresh: network time does not override it
    assert not c.set(100, "gnss")  # implausible
