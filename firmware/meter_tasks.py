"""Supervised loops of the meters' own records: daily freezes and settlements (`frozen`); event logs and clock check
(`meterlog`)."""

import asyncio

import dlt645

_STEP_S = 5  # check-in interval while waiting
_MIN_LOG_WAIT_S = 60


async def _nap(t, name, seconds, woken):
    """Sleep up to `seconds`, checking in; return early when woken() is true."""
    left = seconds
    while left > 0 and not woken():
        t.checkin(name)
        step = min(left, _STEP_S)
        await asyncio.sleep(step)
        left -= step
    t.checkin(name)


async def _meters(t, name):
    # The metering task discovers the meters and makes first contact (learning what they refuse): after that.
    m = t.metering
    while not t.meters or not (m.reads or m.failed_reads):
        await _nap(t, name, 2, lambda: False)
    return list(t.meters)


async def frozen_loop(t, fd, st=None):
    """Daily collection of frozen values, monthly of settlements `st` (and catch-up at boot and when a meter is
    back online)."""
    wanted = set()
    t.metering.on_online.append(wanted.add)
    await _meters(t, "frozen")
    while True:
        back = bool(wanted)
        wanted.clear()
        await fd.round(list(t.meters), lambda: t.checkin("frozen"))
        if st is not None:
            await st.round_if_due(list(t.meters), t.tid, t.clock.uptime_ms() / 1000, lambda: t.checkin("frozen"),
                                  back)
        # after both rounds (their bus time is hours of a scaled clock); uptime to the millisecond, for the same reason
        wait = fd.next_wait_s(t.tid)
        if st is not None:
            wait = min(wait, st.wait_s(t.clock.uptime_ms() / 1000))
        await _nap(t, "frozen", wait, lambda: bool(wanted))


async def meterlog_loop(t, events, mclock):
    """Event counters every `meter_events_s` (and when a meter is back online); the clock check once a day."""
    cfg = t.cfg
    wanted = set()
    t.metering.on_online.append(wanted.add)
    await _meters(t, "meterlog")
    last = None
    while True:
        every = cfg["meter_events_s"]
        now = t.clock.uptime_s()
        due = [a for a in t.meters if a in wanted] if last is not None else []
        if every and (last is None or now - last >= every):
            due = list(t.meters)
            last = now
        wanted.clear()
        for addr in due:
            t.checkin("meterlog")
            try:
                await events.check(addr)
            except dlt645.DLT645Error as e:
                t.log.warning("meter %s events: %s", addr, e)
        if cfg["meter_clock_check"] and mclock.due():
            t.checkin("meterlog")
            await mclock.check(list(t.meters))
        wait = max(_MIN_LOG_WAIT_S, min(every or 3600, 3600) - (t.clock.uptime_s() - now))
        if cfg["meter_clock_check"]:
            wait = min(wait, mclock.wait_s())  # the same at scale 1; a simulated day's check on that day
        await _nap(t, "meterlog", wait, lambda: bool(wanted))
