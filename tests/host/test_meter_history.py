"""The simulated meter's memory: freezes at its own midnight (62 deep), made-up freezes after a supply cut,
power-down and cover events, broadcast time sync taken only as real meters take it, drift and time scale."""

import calendar
import time

import dlt645_frozen as fz
from tools.sim.meter import MeterBus, MeterSpec

A = "000072007201"


def bus(**spec):
    return MeterBus([MeterSpec(A, start_kwh=100.0, base_kw=1.0, swing_kw=0.0, noise_kw=0.0, **spec)], seed=3)


def raw(m, di):
    got = m.read(di)
    return None if got is None else got[1]


def at_local(m, y, mo, d, h=0, mi=0, s=0):
    m.set_clock((y, mo, d, h, mi, s))


def test_freezes_at_its_own_midnight_and_keeps_62():
    m = bus().meter(A)
    at_local(m, 2026, 11, 1, 23, 0)
    assert fz.decode_freeze_time(raw(m, fz.daily_time_di(1))) is None  # nothing frozen yet: zeros
    m.advance(3600)
    f1 = fz.decode_freeze_time(raw(m, fz.daily_time_di(1)))
    assert f1 == (2026, 11, 2, 0, 0)
    fwd = fz.decode_energies(raw(m, fz.daily_fwd_di(1)))
    assert len(fwd) == 5 and fwd[0] == sum(fwd[1:]) and 10000 < fwd[0] < 10200
    m.advance(70 * 86400)
    freezes = m.freezes()
    assert len(freezes) == 62
    dates = [f["date"] for f in freezes]
    assert dates == sorted(dates) and dates[-1] == "2027-01-11" and dates[0] == "2026-11-11"
    assert fz.decode_freeze_time(raw(m, fz.daily_time_di(62)))[:3] == (2026, 11, 11)
    assert m.read(0x0506003F) is None and m.read(0x0506FF01) is None  # beyond the depth, blocks: no such data
    # every freeze served is the one recorded
    for n in (1, 17, 62):
        rec = freezes[-n]
        assert [x / 100 for x in fz.decode_energies(raw(m, fz.daily_fwd_di(n)))] == rec["fwd"]
        assert [x / 100 for x in fz.decode_energies(raw(m, fz.daily_rev_di(n)))] == rec["rev"]
    # 1 kW for a day: consecutive freezes 24 kWh apart
    assert abs(freezes[-1]["fwd"][0] - freezes[-2]["fwd"][0] - 24.0) < 0.05


def test_a_clock_ahead_freezes_early():
    m = bus(clock_offset_s=600).meter(A)
    true_local = m.true_utc() + m.utc_offset_s
    y, mo, d = time.gmtime(true_local)[:3]
    midnight = calendar.timegm((y, mo, d, 0, 0, 0)) + 86400
    m.advance(midnight - true_local - 300)  # 5 min before true midnight: the meter is 5 min past its own
    assert fz.decode_freeze_time(raw(m, fz.daily_time_di(1)))[:3] == time.gmtime(midnight)[:3]


def test_settlement_on_the_first():
    m = bus().meter(A)
    at_local(m, 2026, 11, 30, 12, 0)
    m.advance(13 * 3600)
    block = fz.decode_energies(raw(m, fz.settle_fwd_block_di(1)))
    assert block[0] == fz.decode_energies(raw(m, fz.daily_fwd_di(1)))[0]


def test_settlement_at_its_settlement_day_and_made_up_after_a_supply_cut():
    b = bus(settle_at=(15, 6))
    m = b.meter(A)
    assert fz.decode_settle_day(raw(m, 0x04000B01)) == (15, 6)
    at_local(m, 2026, 11, 15, 5, 0)
    m.advance(3600)
    assert [s["at"] for s in m.settlements()] == ["2026-11-15T06:00"]
    fwd = fz.decode_energies(raw(m, fz.settle_di(fz.SETTLE_FWD_BLOCK, 1)))
    assert len(fwd) == 5 and [x / 100 for x in fwd] == m.settlements()[0]["fwd"]
    assert fz.decode_energies(raw(m, fz.settle_di(fz.SETTLE_FWD, 1))) == fwd[:1]
    assert fz.decode_energies(raw(m, fz.settle_di(fz.SETTLE_FWD_BLOCK, 2))) == [0] * 5  # not settled: zeros
    b.command({"mains": False, "address": A})
    m.advance(65 * 86400)  # off over two settlement days: made up at power-up with the unchanged registers
    b.command({"mains": True, "address": A})
    got = m.settlements()
    assert [s["date"] for s in got] == ["2026-11-15", "2026-12-15", "2027-01-15"]
    assert got[1]["fwd"] == got[2]["fwd"]
    assert b.command({"get": "settlements", "address": A}) == {"settlements": got}
    assert bus(settles=False).meter(A).read(0x04000B01) is None


def test_mains_cut_logs_power_down_goes_silent_and_makes_up_freezes():
    b = bus()
    m = b.meter(A)
    at_local(m, 2026, 11, 1, 20, 0)
    b.command({"mains": False, "address": A})
    assert not m.powered
    assert fz.decode_count(raw(m, fz.event_count_di("power_down"))) == 1
    before = m.registers()[0x00010000]
    m.advance(3 * 86400)
    b.command({"mains": True, "address": A})
    assert abs(m.registers()[0x00010000] - before) < 0.02  # nothing counted while off
    rec = fz.decode_event("power_down", raw(m, fz.event_record_di("power_down", 1)))
    assert rec["start"][:4] == (2026, 11, 1, 20) and rec["end"][:4] == (2026, 11, 4, 20)
    assert [f["date"] for f in m.freezes()] == ["2026-11-02", "2026-11-03", "2026-11-04"]


def test_cover_open_and_close_via_control():
    b = bus()
    m = b.meter(A)
    b.command({"cover": True, "address": A})
    st = fz.decode_status(raw(m, fz.STATUS_BLOCK))
    assert st["cover_open"]
    rec = fz.decode_event("meter_cover", raw(m, fz.event_record_di("meter_cover", 1)))
    assert rec["end"] is None
    b.command({"cover": False, "address": A})
    rec = fz.decode_event("meter_cover", raw(m, fz.event_record_di("meter_cover", 1)))
    assert rec["end"] is not None and not fz.decode_status(raw(m, fz.STATUS_BLOCK))["cover_open"]
    assert b.command({"get": "events", "address": A})["events"]["counts"]["meter_cover"] == 1


def test_broadcast_sync_taken_only_within_the_window_once_a_day_outside_the_guard():
    m = bus().meter(A)
    at_local(m, 2026, 11, 10, 12, 0, 0)
    assert not m.broadcast_sync((2026, 11, 10, 12, 10, 0))  # 10 min away: refused
    assert m.broadcast_sync((2026, 11, 10, 12, 0, 40))
    assert not m.broadcast_sync((2026, 11, 10, 12, 0, 0))  # already synced today
    at_local(m, 2026, 11, 10, 23, 57, 0)
    assert not m.broadcast_sync((2026, 11, 10, 23, 57, 30))  # within 5 min of midnight
    at_local(m, 2026, 11, 11, 0, 10, 0)
    assert m.broadcast_sync((2026, 11, 11, 0, 10, 20))  # a new day
    assert fz.decode_count(raw(m, fz.event_count_di("clock_set"))) == 0  # broadcasts are not clock writes


def test_drift_and_time_scale():
    b = bus()
    m = b.meter(A)
    b.command({"drift_ppm": 100, "address": A})
    c0, t0 = m.clock(), m.true_utc()
    m.advance(86400)
    assert abs((m.clock() - c0) - (m.true_utc() - t0) - 8.64) < 0.5
    b.command({"time_scale": 3600})
    t1 = m.true_utc()
    time.sleep(0.2)
    assert 600 < m.true_utc() - t1 < 1200  # 0.2 s of host time is about 12 minutes
