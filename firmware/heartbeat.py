"""Health reports: the error counters and the heartbeat task (short beats, a full one when anything changed)."""

import gc

from firmware import VERSION, payloads

_FULL_EVERY = 12  # a full heartbeat at least hourly at the default 5-minute interval


def error_counters(t):
    """Every error counter of terminal `t`; those at zero are left out (absent means 0) to keep heartbeats small."""
    m = t.master.stats
    ms = t.modem.stats
    err = {
        "meter_timeouts": m.get("timeouts", 0), "meter_corrupt": m.get("corrupt", 0),
        "meter_abnormal": m.get("abnormal", 0), "meter_failed_reads": t.metering.failed_reads,
        "nmea_bad": t.locating.bad_sentences, "gnss_rejected": t.locating.rejected,
        "at_timeouts": ms.get("timeouts", 0), "at_garbage": ms.get("garbage", 0),
        "modem_reboots": ms.get("rdy_unexpected", 0), "send_fail": ms.get("send_fail", 0),
        "mqtt_reconnects": t.uplink.reconnects, "outbox_dropped": t.outbox.dropped,
        "outbox_corrupt": t.outbox.corrupt, "outbox_write_fail": t.outbox.write_fail,
        "cmd_refused": t.commands.refused, "cmd_dropped": t.commands.dropped,
        "server_fail": ms.get("server_fail", 0), "tls_fail": t.uplink.tls_fail,
        "mqtt_oversize": t.mqtt_counters.get("oversize", 0), "clock_refused": t.clock.refused,
        "meter_undecodable": t.frozen.undecodable + t.meter_events.undecodable + t.settlements.undecodable,
    }
    for kind, _, _ in t.config_problems:
        if kind != "file":
            err["config_" + kind] = err.get("config_" + kind, 0) + 1  # config_unknown, config_bad
    ladder = {k: v for k, v in t.modem.ladder.items() if isinstance(v, int) and v}
    out = {k: v for k, v in err.items() if v}
    if ladder:
        out["ladder"] = ladder
    return out


def body(t, full=True):
    """The heartbeat of terminal `t`: short, or `full` with heap, reset cause, counters, version and update state."""
    ts, tsrc = t.clock.stamp()
    extra = None
    if full:
        extra = {"nsat": t.locating.nsat, "heap": gc.mem_free(), "heap_peak": t.heap_peak,
                 "reset": t.reset_cause, "err": error_counters(t), "fw": VERSION,
                 "upd": t.update.summary() if t.update else {"state": "off"}}
    return payloads.heartbeat(ts, tsrc, t.clock.uptime_s(), t.csq, t.locating.fix, len(t.outbox), extra)


async def loop(t):
    """Every `heartbeat_s`: refresh the signal, then publish a heartbeat (QoS 0, never stored).

    Short heartbeats most of the time; the full one on the first beat of each connection, whenever a counter
    changed, and at least every _FULL_EVERY beats.
    """
    sent_err, since_full, connects = None, _FULL_EVERY, -1
    while True:
        await t.sleep_checked("heartbeat", t.cfg["heartbeat_s"])
        if await t.modem_up():  # up already: never brings the modem up itself
            try:
                t.csq = await t.modem.signal()
            except t.modem_errors:
                pass
        gc.collect()
        err = error_counters(t)
        full = err != sent_err or since_full >= _FULL_EVERY or connects != t.uplink.connects
        if await t.uplink.publish("heartbeat", payloads.dumps(body(t, full)), qos=0):
            since_full = 0 if full else since_full + 1
            if full:
                sent_err, connects = err, t.uplink.connects
        t.led.on() if t.uplink.connected else t.led.off()
