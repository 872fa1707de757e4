"""Soak: the terminal under seeded random faults and power cuts, checked by an independent subscriber.

    python -m tools.soak [--cycles 30] [--seed 1] [--heapsize 128K] [--restarts 20] [--commands]
                         [--json build/soak.json]

The firmware runs from .mpy under the unix port with its simulators and a real
mosquitto, intervals shortened. Each cycle injects one fault the simulators offer
(or a broker restart, or SIGKILL + restart of the firmware: a power cut), holds it
a random while, clears it, and measures the time until the terminal delivers a
record it took after the fault. At the end the checker drains and compares what
reached the broker with what the terminal numbered and what the meter served:
readings taken and delivered, lost, duplicated, sequence gaps. Exit status 0
only with 0 lost, 0 gaps, every fault recovered and no unexpected exit.

The SIM is a private-APN SIM (the modem simulator activates data only on the
configured APN and forgets it on every restart). During a broker outage with a
healthy network the module must be left alone (no CFUN, QIDEACT, GNSS stop or
power cycle). After the cycles, `--restarts` unsolicited module restarts in a
row: each must be back online within RESTART_LIMIT_S.

With --commands the server talks to the terminal too: a signed query after every
cycle (each must be answered), and command faults join the draw: a flood of
bad-MAC commands, oversize messages on the command topic, and a GNSS receiver
reporting UTC +3 h (the terminal must refuse it, report `clock_refused`, and not
set the meter's clock from it; meters are synchronised in this mode).

Every broker restart also checks that a subscriber's persistent session survives
it: a message queued for a disconnected subscriber is delivered after the restart.
"""

import argparse
import json
import queue
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho

from tools.procs import LOOPBACK
from tools.rig import TerminalRig

# fault name -> (what it does, how long it is held in seconds: (min, max))
FAULTS = {
    "modem:peer_close": ("the server side closes the TCP connection", (0, 0)),
    "modem:pdpdeact": ("the network drops the PDP context", (0, 0)),
    "modem:send_fail": ("the module's send buffer is full", (2, 5)),
    "modem:hang": ("the module stops answering", (3, 8)),
    "modem:wedged": ("the module stops answering until its reset line is pulsed (the ladder's power rung)",
                     (0, 0)),
    "modem:reboot": ("the module reboots silently (echo on, RDY)", (0, 0)),
    "modem:garbage": ("line noise on the modem UART", (1, 3)),
    "modem:urc_mid_response": ("URCs inside responses", (2, 4)),
    "modem:stack_degraded": ("the module's IP stack fails until CFUN 0/1", (0, 0)),
    "meter:silence": ("the meter does not answer", (3, 8)),
    "meter:bad_cs": ("corrupt frames from the meter", (2, 5)),
    "meter:noise": ("noise around the meter's frames", (2, 5)),
    "broker:restart": ("the MQTT broker restarts", (0, 0)),
    "broker:down": ("the MQTT broker is down a while; network and module healthy", (15, 40)),
    "power:cut": ("SIGKILL of the firmware, then a restart (a power cut)", (1, 3)),
}
# with --commands: faults of the command channel and of time (see inject_cmd)
CMD_FAULTS = {
    "cmd:flood": ("1000 commands with a bad MAC as fast as the broker takes them", (0, 0)),
    "cmd:oversize": ("25 QoS 1 messages of 6 KB on the command topic", (0, 0)),
    "clock:gnss_jump": ("the GNSS receiver reports UTC + 3 h (network time stays right)", (3, 8)),
}
CLOCK_JUMP_S = 3 * 3600
ANSWER_LIMIT_S = 30
RECOVERY_LIMIT_S = 90
RESTART_LIMIT_S = 60
APN = "private.apn"
SERVER_BACKOFF_MAX_S = 10
MODULE_ACTIONS = ("+CFUN", "+QIDEACT", "+QGPSEND", "+QPOWD")  # what a server outage must never cause
# faults nothing clears but the terminal itself (or the broker, which comes back by itself)
_NOT_CLEARED = ("broker:restart", "modem:wedged")


def inject(rig, name, on, params=None):
    where, _, fault = name.partition(":")
    if where == "modem":
        rig.modem.set_fault("hang" if fault == "wedged" else fault, on, **(params or {}))
    elif where == "meter":
        rig.bus.set_fault(fault, on)
    elif fault == "down":
        if on:
            rig.broker.proc.stop(timeout=10)
        else:
            b = rig.broker
            b.__init__(log_dir=b.dir, port=b.port, persistent=b.persistent)
    elif where == "broker" and on:
        rig.broker.restart()
    elif where == "power":
        if on:
            rig.power_cut()
        else:
            rig.start_firmware()


def inject_cmd(rig, name, on, stats):
    """The command faults: a bad-MAC flood, oversize messages, a GNSS clock jump (checked while it is held)."""
    if name == "cmd:flood" and on:
        body = json.dumps({"id": "flood", "op": "query", "args": {}, "ts": int(time.time()), "nonce": "f" * 16})
        env = json.dumps({"body": body, "mac": "0" * 64})
        for _ in range(1000):
            rig.obs.publish(rig.prefix + "cmd", env, qos=1)
    elif name == "cmd:oversize" and on:
        for _ in range(25):
            rig.obs.publish(rig.prefix + "cmd", b"x" * 6000, qos=1)
    elif name == "clock:gnss_jump":
        rig.modem.set_fault("gnss_time", on, offset_s=CLOCK_JUMP_S)
        if on:
            stats["clock_jumps"] += 1
        else:  # held until now: the jump must have been refused and reported, and a meter sync refused with it
            try:
                rig.wait("a clock_refused event", lambda: [
                    e for e in rig.of("event") if e.get("kind") == "clock_refused" and e["data"]["src"] == "gnss"
                    and abs(e["data"]["delta_s"] - CLOCK_JUMP_S) < 120], ANSWER_LIMIT_S)
            except AssertionError:
                stats["clock_jumps_not_reported"] += 1
            if rig.alive():
                rid, _ = rig.command("sync_time")
                try:
                    ans = rig.answer(rid, ANSWER_LIMIT_S)
                    if ans.get("ok") or ans.get("error") != "no_clock":
                        stats["meter_synced_from_wrong_clock"] += 1
                except AssertionError:
                    stats["sync_time_unanswered"] += 1


def query_answered(rig, stats):
    """A signed query, as a server sends it; True if its answer came back in time."""
    stats["queries_sent"] += 1
    rid, _ = rig.command("query", {"what": ["address", "energy"]})
    try:
        ans = rig.answer(rid, ANSWER_LIMIT_S)
    except AssertionError:
        stats["queries_lost"] += 1
        return False
    if ans.get("ok"):
        stats["queries_answered"] += 1
    else:
        stats["queries_refused"].append(ans.get("error"))
    return True


def persistent_session_survives(rig, restart):
    """A subscriber with a persistent session, away while a QoS 1 message is queued for it and the broker
    restarts: True if the message still reaches it afterwards."""
    got = queue.Queue()
    cid, topic = "witness-" + uuid.uuid4().hex[:8], "witness/" + uuid.uuid4().hex[:8]

    def client():
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False)
        c.on_message = lambda cl, ud, m: got.put(m.payload)
        c.connect(LOOPBACK, rig.broker.port)
        c.loop_start()
        return c

    c = client()
    c.subscribe(topic, qos=1)
    time.sleep(0.3)
    c.loop_stop()
    c.disconnect()
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid + "-pub")
    pub.connect(LOOPBACK, rig.broker.port)
    pub.loop_start()
    pub.publish(topic, b"kept", qos=1).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()
    restart()
    c = client()
    try:
        return got.get(timeout=10) == b"kept"
    except queue.Empty:
        return False
    finally:
        c.loop_stop()
        c.disconnect()


def check(rig):
    """Compare what reached the broker with what the terminal numbered and the meter served."""
    seqs = rig.record_seqs()
    distinct = sorted(set(seqs))
    top = distinct[-1] if distinct else 0
    gaps = [s for s in range(1, top + 1) if s not in set(distinct)]
    energy = rig.of("energy")
    served = set()
    for s in list(rig.bus.served):
        if s["di"] == "0001FF00":
            served.add(round(s["value"][0], 2))
        elif s["di"] == "00010000":
            served.add(round(s["value"], 2))
    unmatched = [e["seq"] for e in energy if round(e["kwh"]["fwd"], 2) not in served]
    return {
        "records_numbered": top,
        "records_delivered": len(distinct),
        "records_lost": len(gaps),
        "sequence_gaps": gaps[:20],
        "duplicates_delivered": len(seqs) - len(distinct),
        "readings_delivered": len({e["seq"] for e in energy}),
        "readings_not_served_by_meter": unmatched[:20],
        "meter_block_reads_served": sum(1 for s in rig.bus.served if s["di"] == "0001FF00"),
        # resets the terminal asked for itself (a dead or stuck task, a crash): none is expected from any fault
        "self_resets": [e["data"]["why"] for e in rig.of("event")
                        if e.get("kind") == "reboot" and e.get("data", {}).get("why")],
    }


def module_actions(rig):
    return sum(rig.modem.seen.get(k, 0) for k in MODULE_ACTIONS) + rig.modem.stats["reboots"]


def _online_since(rig, t0):
    with rig.lock:
        return [t for t, leaf, b, _ in rig.msgs if t >= t0 and leaf == "status" and isinstance(b, dict)
                and b.get("state") == "online"]


def restarts_phase(rig, n, log):
    """n unsolicited module restarts in a row: seconds until back online after each (None: not within limit)."""
    times = []
    for i in range(n):
        if not rig.alive():
            break
        t0 = time.monotonic()
        rig.modem.set_fault("reboot")
        try:
            got = rig.wait("online after module restart %d" % (i + 1), lambda t=t0: _online_since(rig, t),
                           RESTART_LIMIT_S)
            times.append(round(got[0] - t0, 1))
            log("restart %2d: back online in %5.1f s" % (i + 1, got[0] - t0))
        except AssertionError:
            times.append(None)
            log("restart %2d: NOT back online within %d s" % (i + 1, RESTART_LIMIT_S))
        time.sleep(2)
    return times


def _cmd_stats():
    return {"queries_sent": 0, "queries_answered": 0, "queries_lost": 0, "queries_refused": [], "clock_jumps": 0,
            "clock_jumps_not_reported": 0, "meter_synced_from_wrong_clock": 0, "sync_time_unanswered": 0}


def _cmd_passed(figures):
    return (figures["queries_lost"] == 0 and not figures["queries_refused"]
            and figures["queries_answered"] == figures["queries_sent"] and figures["clock_jumps_not_reported"] == 0
            and figures["meter_synced_from_wrong_clock"] == 0 and figures["sync_time_unanswered"] == 0
            and abs(figures["meter_clock_offset_s"]) < 120 and not figures["records_stamped_in_the_future"])


def run(cycles=30, seed=1, heapsize=None, workdir=None, log=print, fail_on=None, restarts=0, commands=False,
        sequence=None):
    """The soak; `sequence` (fault names) replaces the random draw of faults, cycle by cycle."""
    rng = random.Random(seed)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="bdmeter-soak-"))
    t_start = time.monotonic()
    cfg = {"apn": APN, "server_backoff_max_s": SERVER_BACKOFF_MAX_S}
    if commands:
        cfg["time_sync_meters"] = True
    rig = TerminalRig(workdir, seed=seed, heapsize=heapsize, start=False, cfg=cfg)
    rig.modem.apn_required = APN  # a private-APN SIM
    rig.start_firmware()
    rig.fail_on = fail_on
    recoveries, failures, unexpected_exits = [], [], 0
    server_outage_module_actions = 0
    restart_times = []
    cmd_stats, sessions = _cmd_stats(), {"kept": 0, "lost": 0}
    faults = dict(FAULTS, **CMD_FAULTS) if commands else FAULTS
    try:
        rig.wait("first readings", lambda: len(rig.of("energy")) >= 2, 90)
        names = sorted(faults)
        for cycle in range(1, cycles + 1):
            name = names[rng.randrange(len(names))]
            if sequence:
                name = sequence[(cycle - 1) % len(sequence)]
            lo, hi = faults[name][1]
            hold = rng.uniform(lo, hi)
            if not rig.alive():
                unexpected_exits += 1
                log("cycle %d: firmware was not running (exit %s); restarting" % (cycle, rig.fw.p.returncode))
                rig.start_firmware()
            params = {"count": rng.randint(1, 4)} if name == "modem:send_fail" else None
            actions0 = module_actions(rig)
            if name in CMD_FAULTS:
                inject_cmd(rig, name, True, cmd_stats)
            elif name == "broker:restart":
                kept = persistent_session_survives(rig, rig.broker.restart)
                sessions["kept" if kept else "lost"] += 1
            else:
                inject(rig, name, True, params)
            time.sleep(hold)
            if name in CMD_FAULTS:
                inject_cmd(rig, name, False, cmd_stats)
            elif name not in _NOT_CLEARED:
                inject(rig, name, False)
            t0 = time.monotonic()
            # recovered = a record numbered after the fault was cleared has reached the broker
            before = max(rig.record_seqs() or [0])
            try:
                rig.wait("a record taken after %s" % name,
                         lambda b=before: max(rig.record_seqs() or [0]) > b + 1, RECOVERY_LIMIT_S)
                dt = time.monotonic() - t0
                recoveries.append((name, dt))
                if name == "broker:down" and module_actions(rig) != actions0:
                    server_outage_module_actions += module_actions(rig) - actions0
                    log("cycle %d: the module was acted on during a server outage" % cycle)
                log("cycle %2d: %-24s held %4.1f s, recovered in %5.1f s" % (cycle, name, hold, dt))
            except AssertionError:
                failures.append(name)
                log("cycle %2d: %-24s NOT recovered within %d s" % (cycle, name, RECOVERY_LIMIT_S))
                if not rig.alive():
                    unexpected_exits += 1
                    rig.start_firmware()
            if commands and rig.alive() and not query_answered(rig, cmd_stats):
                log("cycle %2d: the query after %s was not answered within %d s" % (cycle, name, ANSWER_LIMIT_S))
            time.sleep(rng.uniform(0.5, 2.0))
        restart_times = restarts_phase(rig, restarts, log)
        # drain: every numbered record must arrive
        rig.wait("the outbox drained", lambda: rig.of("heartbeat") and rig.of("heartbeat")[-1]["outbox"] == 0
                 and not check(rig)["sequence_gaps"], 120, allow_exit=True)
    except AssertionError as e:
        failures.append("drain: %s" % str(e)[:200])
    finally:
        figures = check(rig)
        hb = [b for b in rig.of("heartbeat") if "err" in b]
        figures["persistent_sessions_kept_across_broker_restarts"] = sessions["kept"]
        figures["persistent_sessions_lost_across_broker_restarts"] = sessions["lost"]
        if commands:
            figures.update(cmd_stats)
            figures["meter_clock_offset_s"] = round(rig.bus.meters[0].clock_offset_s, 1)
            figures["records_stamped_in_the_future"] = [
                b["seq"] for b in rig.of("energy") + rig.of("event") if b.get("ts", 0) > time.time() + 120][:20]
        rig.close()
    by_fault = {}
    for name, dt in recoveries:
        by_fault.setdefault(name, []).append(dt)
    figures.update({
        "cycles": cycles, "seed": seed, "heapsize": heapsize or "default", "commands": commands,
        "faults_injected": cycles, "faults_recovered": len(recoveries), "faults_not_recovered": failures,
        "unexpected_exits": unexpected_exits, "firmware_starts": rig.starts,
        "recovery_s_median": round(statistics.median([d for _, d in recoveries]), 1) if recoveries else None,
        "recovery_s_max": round(max(d for _, d in recoveries), 1) if recoveries else None,
        "recovery_s_by_fault": {k: round(max(v), 1) for k, v in sorted(by_fault.items())},
        "last_heartbeat_err": hb[-1]["err"] if hb else None,
        "server_outage_module_actions": server_outage_module_actions,
        "module_restarts": len(restart_times),
        "module_restarts_online_s": restart_times,
        "module_restart_online_s_median": (round(statistics.median([t for t in restart_times if t is not None]), 1)
                                           if any(t is not None for t in restart_times) else None),
        "module_restart_online_s_max": (max(t for t in restart_times if t is not None)
                                        if any(t is not None for t in restart_times) else None),
        "qiact_refused": rig.modem.stats["qiact_refused"],
        "wall_s": round(time.monotonic() - t_start, 1),
    })
    figures["passed"] = (figures["records_lost"] == 0 and not failures and unexpected_exits == 0
                         and not figures["readings_not_served_by_meter"] and not figures["self_resets"]
                         and server_outage_module_actions == 0 and None not in restart_times
                         and len(restart_times) == restarts
                         and sessions["lost"] == 0 and (not commands or _cmd_passed(figures)))
    return figures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--heapsize", default=None, help="micropython -X heapsize, e.g. 128K")
    ap.add_argument("--restarts", type=int, default=20,
                    help="unsolicited module restarts in a row after the cycles (private-APN SIM)")
    ap.add_argument("--commands", action="store_true", help="signed queries every cycle, and command faults")
    ap.add_argument("--json", default="build/soak.json")
    a = ap.parse_args(argv)
    figures = run(a.cycles, a.seed, a.heapsize, fail_on="MemoryError" if a.heapsize else None,
                  restarts=a.restarts, commands=a.commands)
    print()
    for k, v in figures.items():
        print("  %-30s %s" % (k, v))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(figures, indent=2) + "\n")
    print("wrote %s" % a.json)
    print("soak: %s (%d lost, %d gaps, %d/%d faults recovered, %d unexpected exits, %d self-resets)" % (
        "PASSED" if figures["passed"] else "FAILED", figures["records_lost"], len(figures["sequence_gaps"]),
        figures["faults_recovered"], figures["faults_injected"], figures["unexpected_exits"],
        len(figures["self_resets"])))
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
