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


T0 = 1795430400


def _clock():
    seen = []
    c = Clock(on_refused=lambda src, delta: seen.append((src, delta)))
    c._ref_utc, c.source = None, "none"  # whatever the host's RTC says: start unset
    return c, seen


def _later(c, s):
    c._up_ms += s * 1000  # as if `s` seconds went by


def test_gnss_jump_that_network_time_contradicts_is_refused():
    # regression: a receiver reporting +3 h (or +1024 weeks) was adopted within seconds
    c, seen = _clock()
    assert c.set(T0, "net") and c.set(T0 + 1, "gnss")
    assert c.agreed
    for wrong in (T0 + 3 * 3600, T0 + 1024 * 7 * 86400):
        for i in range(5):  # a receiver that keeps saying so
            _later(c, 1)
            assert not c.set(wrong + i, "gnss")
        assert abs(c.now() - (T0 + 1 + (c._up_ms - c._ref_up_ms) // 1000)) <= 1
    assert len(seen) == 1 and seen[0][0] == "gnss" and abs(seen[0][1] - 3 * 3600) <= 5  # one run, reported once
    assert c.refused == 1
    assert not c.agreed and c.source == "gnss"  # no meter sync from a disputed clock
    _later(c, 1)
    assert c.set(c.now(), "gnss") and c.agreed  # the receiver is right again: settled


def test_unconfirmed_jump_of_a_checked_clock_waits_for_the_other_source():
    c, seen = _clock()
    assert c.set(T0, "gnss")
    assert c.wants_net  # never cross-checked
    assert not c.set(T0 + 3 * 3600, "gnss")  # nothing confirms it
    assert seen == [("gnss", 3 * 3600)] and c.wants_net
    assert not c.set(T0 + 3 * 3600, "net")  # the network agrees with the new time: not a refusal
    assert not c.wants_net
    assert c.set(T0 + 3 * 3600 + 1, "gnss")  # ... so the jump is adopted: the running clock was wrong
    assert abs(c.now() - (T0 + 3 * 3600 + 1)) <= 1 and c.agreed


def test_network_time_contradicting_gnss_is_refused():
    c, seen = _clock()
    assert c.set(T0, "gnss")
    _later(c, 7 * 3600)  # GNSS silent long enough for network time to count
    assert not c.set(T0 + 7 * 3600 - 5000, "net")
    assert seen == [("net", -5000)]


def test_small_corrections_and_unchecked_clocks_move_freely():
    c, seen = _clock()
    assert c.set(T0, "gnss") and c.set(T0 + 30, "gnss")  # discipline within the agreement window
    c2, seen2 = _clock()
    c2._ref_utc, c2.source = T0 - 86400, "rtc"  # an RTC that drifted a day while unpowered
    assert c2.set(T0, "gnss") and c2.source == "gnss"
    assert seen == [] and seen2 == []
