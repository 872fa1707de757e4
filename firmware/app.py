"""The terminal: wiring of config, board, drivers and tasks, the supervisor, and the reset loop."""

import asyncio
import gc
import sys

import atengine
import dlt645_master
import quectel
from mpcompat import ticks_diff, ticks_ms
from mqtt_session import MQTTError

from firmware import VERSION, config, heartbeat, payloads
from firmware import board as boardmod
from firmware import log as logmod
from firmware.clock import Clock, env_scale
from firmware.commands import Commands
from firmware.knowngood import KnownGood
from firmware.locating import Locating
from firmware.frozen import FrozenDays
from firmware.meter_clock import MeterClock
from firmware.meter_events import MeterEvents
from firmware.meter_tasks import frozen_loop, meterlog_loop
from firmware.settlement import Settlements
from firmware.metering import Metering
from firmware.outbox import Outbox, makedirs
from firmware.supervision import guarded, note_reset, reason, take_reset_note
from firmware.uplink import Uplink

_BOARD_CONFIG = "config.json"
_CHECK_S = 5  # the longest any task sleeps between check-ins
_TIME_SYNC_EVERY_S = 86400
_MIN_LADDER_RESET_S = 1800
# how long each task may go without checking in before the supervisor stops feeding the watchdog
_ALLOW_S = {"meter": 180, "gnss": 400, "uplink": 900, "cmd": 300, "heartbeat": 300, "frozen": 300,
            "meterlog": 600, "update": 300}
_CRASH_PAUSE_S = 5  # after an unexpected exception, before the reset: a crash that repeats must not spin
_RESET_NOTE = "/reset_why"  # in state_dir: why the terminal last reset itself
_INTERVAL_OF = {"meter": "poll_s", "gnss": "gnss_s", "heartbeat": "heartbeat_s"}  # the config key timing each task


class Reset(Exception):
    """Raised out of the event loop to reset the MCU (or, on the unix port, restart in-process)."""


class Terminal:
    ModemError = quectel.ModemError

    def __init__(self, cfg_path, reset_cause, root="", slot="base"):
        self.cfg_path = cfg_path or _BOARD_CONFIG
        self.log = logmod.get("bdmeter")
        cfg, source, self.config_problems = config.load(self.cfg_path, self.log)
        self.known_good = KnownGood(self.cfg_path, self.log)
        cfg, source = self.known_good.choose(cfg, source)
        self.cfg = cfg
        logmod.hide([cfg[k] for k in config.SECRETS])  # whatever logs them (an AT trace, an error), they show as ***
        self.log = logmod.get("bdmeter", logmod.level(cfg["log_level"]))
        self.config_changed = asyncio.Event()  # pulsed by apply_config: sleeps recompute their end at once
        self._connects_seen = 0
        self.log.info("bdmeter %s starting (config: %s, board %s, reset cause %s)", VERSION, source,
                      cfg["board"], reset_cause)
        self.reset_cause = reset_cause
        self.board = boardmod.profile(cfg["board"])
        makedirs(cfg["state_dir"])
        self.reset_note = cfg["state_dir"] + _RESET_NOTE
        self.reset_why = take_reset_note(self.reset_note)
        scale, bad = env_scale()  # a simulation on the unix port only (a board has no environment)
        if bad:
            self.log.warning(bad)
        self.clock = Clock(on_refused=self._clock_refused, scale=scale)
        if scale != 1:
            self.log.warning("SIMULATION: the clock runs %d times faster than real time", scale)
        self.outbox = Outbox(cfg["state_dir"], cfg["outbox_max"], self.log, encode=payloads.dumps,
                             reserve=cfg["outbox_reserve_kb"] * 1024)
        self.tid = cfg["terminal_id"]
        self.meters = list(cfg["meters"])
        self.csq = None
        self.imei = None
        self.iccid = None
        self._reset_why = None
        self.heap_peak = 0
        self.mqtt_counters = {}  # totals over every MQTT session ("oversize")
        self._checkins = {}
        self._last_time_sync = None
        self._modem_ready = False
        self._bringing_up = False
        self._uarts = []

        meter_uart = boardmod.open_uart(self.board, "meter_uart", cfg)
        modem_uart = boardmod.open_uart(self.board, "modem_uart", cfg)
        self._uarts = [meter_uart, modem_uart]
        self.master = dlt645_master.Master(meter_uart, timeout_ms=cfg["meter_timeout_ms"], baud=cfg["meter_baud"],
                                           de=boardmod.de_pin(self.board, "meter_uart"), log=self.log)
        self.modem = quectel.Quectel(modem_uart, apn=cfg["apn"], apn_user=cfg["apn_user"],
                                     apn_pass=cfg["apn_pass"], gnssconfig=cfg["gnssconfig"],
                                     pwrkey=boardmod.output(self.board, "pwrkey", cfg),
                                     reset=boardmod.output(self.board, "reset", cfg), log=self.log,
                                     on_mcu_reset=self._ladder_reset,
                                     backoff_base_ms=cfg["link_backoff_s"] * 1000,
                                     backoff_max_ms=cfg["link_backoff_max_s"] * 1000,
                                     server_backoff_max_ms=cfg["server_backoff_max_s"] * 1000)
        self.modem_errors = (quectel.ModemError, atengine.ATEngineError, OSError, asyncio.TimeoutError)
        self.link_errors = self.modem_errors + (MQTTError,)
        self.led = boardmod.output(self.board, "led", cfg)
        self.watchdog = boardmod.Watchdog(self.board, cfg["wdt_ms"], self.log)
        self.metering = Metering(self)
        self.frozen = FrozenDays(self.master, cfg, self.clock, self.store, self.log, self._frozen_pause)
        self.settlements = Settlements(self.master, cfg, self.clock, self.store, self.log, self.metering.caps,
                                       self._frozen_pause)
        self.meter_events = MeterEvents(self.master, self.clock, self.store, self.log, cfg["state_dir"],
                                        on_clear=self.metering.plausibility.forget)
        self.meter_clock = MeterClock(self.master, cfg, self.clock, self.emit_event, self.log)
        self.locating = Locating(self)
        self.uplink = Uplink(self)
        self.update = _updater(self, root, slot)
        self.commands = Commands(self)

    # -- records -------------------------------------------------------------
    def store(self, kind, body):
        """Put a record in the flash outbox (it gets its inc and seq there) and wake the uplink.

        Drops not yet reported go out as an outbox_overflow event, at most hourly (the outbox keeps the pace).
        Returns the record's seq, or None if it could not be written.
        """
        seq = self.outbox.put(kind, body)  # never raises OSError: a full flash drops (and counts) the oldest
        self.uplink.wake.set()
        due = self.outbox.overflow_due(self.clock.uptime_s())
        if due:
            self.emit_event("outbox_overflow", {"dropped": due[0], "total": due[1]})
        return seq

    def emit_event(self, kind, data=None):
        ts, tsrc = self.clock.stamp()
        self.log.info("event %s %s", kind, data or "")
        self.store("event", payloads.event(ts, tsrc, kind, data))

    def emit_register(self, why):
        ts, tsrc = self.clock.stamp()
        self.store("register", payloads.register(ts, tsrc, why, self.meters, self.locating.pos.as_dict(),
                                                 self.imei, self.iccid, self.csq))

    async def _frozen_pause(self):
        self.checkin("frozen")
        await asyncio.sleep_ms(self.cfg["frozen_pace_ms"])

    # -- modem ---------------------------------------------------------------
    async def modem_up(self, bring_up=False):
        """True when the modem is up; with bring_up, start it (only the uplink does, one at a time)."""
        if self._modem_ready and self.modem.ready:
            return True
        if not bring_up or self._bringing_up:
            return False
        self._bringing_up = True
        try:
            self.checkin("uplink", _ALLOW_S["uplink"])
            await self.modem.start()
            self.imei, self.iccid = self.modem.imei, self.modem.iccid
            if not self.tid:
                self.tid = self.imei
                self.commands.auth.tid = self.tid
            try:
                await self.modem.gnss_start()
            except self.modem_errors as e:
                self.log.warning("GNSS start failed: %s", e)
            if self.clock.source in ("none", "rtc"):
                nt = await self.modem.network_time()
                if nt:
                    from firmware.clock import epoch

                    self.clock.set(epoch(*nt), "net")
            self.csq = await self.modem.signal()
            self._modem_ready = True
            self.log.info("modem up: IMEI %s, signal %s", self.imei, self.csq)
            return True
        finally:
            self._bringing_up = False

    # -- supervision ---------------------------------------------------------
    def checkin(self, task, allow_s=None):
        self._checkins[task] = (self.clock.uptime_s(), allow_s or _ALLOW_S[task])

    def checkins(self):
        """task -> (uptime of its last check-in, allowance in s)."""
        return self._checkins

    async def sleep_checked(self, task, seconds):
        """Sleep `seconds`, checking in at least every few seconds so the supervisor sees the task alive.

        When the config key that times `task` is lowered meanwhile (config.set), the end moves earlier by as
        much, at once: a mistaken day-long interval corrected to a minute does not keep the task asleep for a
        day. A raised interval lets this sleep end as planned; the next one is the longer one.
        """
        key = _INTERVAL_OF.get(task)
        interval = self.cfg[key] if key else 0
        start = ticks_ms()
        while not self._reset_why:
            self.checkin(task)
            end_ms = (seconds + (min(0, self.cfg[key] - interval) if key else 0)) * 1000
            left = end_ms - ticks_diff(ticks_ms(), start)
            if left <= 0:
                break
            try:
                await asyncio.wait_for_ms(self.config_changed.wait(), min(left, _CHECK_S * 1000))
            except asyncio.TimeoutError:
                pass
        self.checkin(task)
        if self._reset_why:
            # A reset is pending: returning at once would let a task whose loop does not otherwise wait (the
            # heartbeat with no link) spin without yielding, and the supervisor would never get to reset.
            await asyncio.sleep(0.1)

    async def _supervise(self):
        """Feed the watchdog only while every task has checked in within its allowance."""
        starving = None
        while True:
            used = gc.mem_alloc()
            if used > self.heap_peak:
                self.heap_peak = used  # sampled each second: the high-water mark the heartbeat reports
            now = self.clock.uptime_s()
            self._watch_config(now)
            late = [name for name, (at, allow) in self._checkins.items() if now - at > allow]
            if not late:
                self.watchdog.feed()
                if starving is not None:  # they came back before the watchdog bit: no reset to explain
                    take_reset_note(self.reset_note)
                starving = None
            elif starving is None:
                starving = late
                why = "stuck: " + ",".join(late)
                self.log.error("task(s) %s; watchdog no longer fed", why)
                note_reset(self.reset_note, why)  # a hardware watchdog resets without asking: say why beforehand
                self.watchdog.would_reset(why)
                if not self.board.get("wdt"):
                    self.request_reset(why)
            if self._reset_why:
                raise Reset(self._reset_why)
            await asyncio.sleep(1)

    def _watch_config(self, now):
        # A new connection (CONNACK and the status PUBACK) proves the running config reaches the server: keep
        # it. A long silence on a config that never did: restart on the copy that last did (once per file).
        if self.uplink.connects != self._connects_seen:
            self._connects_seen = self.uplink.connects
            self.known_good.reached(self.cfg)
        silent = self.known_good.tick(now, self.uplink.connected, self.cfg)
        if silent is not None and not self._reset_why:
            self.log.error("no server contact for %d s: back to the config that last reached it", silent)
            try:
                self.emit_event("config_fallback", {"silent_s": silent})
            except OSError as e:  # a full flash must not keep the terminal on a config that cannot reach anyone
                self.log.error("config_fallback event not stored: %s", e)
            self.known_good.fall_back(self.cfg)
            self.request_reset("config fallback")

    def _ladder_reset(self):
        # The last rung of the modem ladder. A reset loop helps nobody: at most one every _MIN_LADDER_RESET_S.
        if self.clock.uptime_s() >= _MIN_LADDER_RESET_S:
            self.request_reset("modem recovery ladder exhausted")
        else:
            self.log.warning("modem ladder asks for an MCU reset; too soon after boot, backing off instead")

    def request_reset(self, why):
        self._reset_why = why  # first: logging may itself fail when the heap is exhausted
        try:
            self.log.warning("reset requested: %s", why)
        except MemoryError:
            pass

    def _task_ended(self, name, exc):
        # A task loops forever, so its end is a crash (a MemoryError in a fragmented heap, a bug): reset now
        # rather than when its watchdog allowance runs out, and let the reboot event say why.
        self.request_reset("task %s died: %s" % (name, reason(exc)))

    # -- heartbeat (firmware/heartbeat.py) ------------------------------------
    def error_counters(self):
        return heartbeat.error_counters(self)

    def heartbeat_body(self, full=True):
        return heartbeat.body(self, full)

    def _clock_refused(self, src, delta_s):
        self.log.warning("%s time refused: %+d s from the clock, not confirmed by the other source", src, delta_s)
        self.emit_event("clock_refused", {"src": src, "delta_s": delta_s})

    async def maybe_sync_meter_time(self):
        if not self.clock.agreed:
            return  # never set the meters from a clock its sources dispute
        now = self.clock.uptime_s()
        if self._last_time_sync is None or now - self._last_time_sync >= _TIME_SYNC_EVERY_S:
            if await self.metering.sync_time():
                self._last_time_sync = now

    # -- config --------------------------------------------------------------
    def apply_config(self, changes):
        """Persist validated `changes` atomically with the rest of the file, then apply them at once.

        Raises OSError when the file cannot be written: then nothing changes, in flash or in the running
        terminal, so what the server was told is what the terminal will run after a reboot.
        """
        new = dict(self.cfg)
        new.update(changes)
        try:
            config.save(self.cfg_path, config.overrides_of(new))
        except OSError as e:
            self.log.error("config.set of %s not saved, not applied: %s", ",".join(sorted(changes)), e)
            raise
        self.cfg.update(changes)
        if "relocation_m" in changes:
            self.locating.pos.relocation_m = changes["relocation_m"]
        if "cmd_max_skew_s" in changes:
            self.commands.auth.max_skew_s = changes["cmd_max_skew_s"]
        self.config_changed.set()  # wake every sleep: their ends move with the new intervals
        self.config_changed.clear()
        self.emit_event("config_changed", {"keys": sorted(changes)})

    # -- life cycle ----------------------------------------------------------
    async def run(self):
        boot = {"cause": self.reset_cause}
        if self.reset_why:
            boot["why"] = self.reset_why
        self.emit_event("reboot", boot)
        if self.config_problems:
            try:
                self.emit_event("config_problems", config.problem_keys(self.config_problems))
            except OSError as e:  # the log and the heartbeat's counters still say it
                self.log.error("config_problems event not stored: %s", e)
        specs = [("meter", self.metering.run()), ("gnss", self.locating.run()), ("uplink", self.uplink.run()),
                 ("cmd", self.commands.run()), ("heartbeat", heartbeat.loop(self)),
                 ("frozen", frozen_loop(self, self.frozen, self.settlements)),
                 ("meterlog", meterlog_loop(self, self.meter_events, self.meter_clock))]
        if self.update:
            specs.append(("update", self.update.run()))
        for name, _ in specs:
            self.checkin(name)
        tasks = [asyncio.create_task(guarded(name, coro, self._task_ended)) for name, coro in specs]
        try:
            await self._supervise()
        finally:
            for task in tasks:
                task.cancel()

    def close(self):
        for u in self._uarts:
            try:
                u.close()
            except (OSError, AttributeError):
                pass  # machine.UART on some ports has no close()


def _updater(t, root, slot):
    """The update task, loaded only when updates are configured or a past one needs finishing: without it,
    its code (and the staging and Ed25519 it loads on demand) stays out of the heap."""
    from firmware import slots

    st = slots.read(root)
    last = st.get("last")
    if t.cfg["update_pubkey"] or st.get("trial") or (isinstance(last, dict) and not last.get("reported")):
        from firmware.update import Updater

        return Updater(t, root, slot)
    return None


def _reset_cause():
    try:
        import machine

        causes = {getattr(machine, "PWRON_RESET", -1): "power", getattr(machine, "HARD_RESET", -2): "hard",
                  getattr(machine, "WDT_RESET", -3): "wdt", getattr(machine, "DEEPSLEEP_RESET", -4): "deepsleep",
                  getattr(machine, "SOFT_RESET", -5): "soft"}
        return causes.get(machine.reset_cause(), "unknown")
    except (ImportError, AttributeError):
        return "power"  # the unix port: a process start is a power-on


def _close(t):
    # A second Ctrl-C (an impatient user, a launcher and a shell both signalling) must not turn the stop into a
    # traceback half-way through closing the links: closing is idempotent, so simply finish it.
    for _ in range(3):
        try:
            t.close()
            return
        except KeyboardInterrupt:
            pass


def _run(cfg_path, root, slot):
    """Run the terminal, and again after every reset, until Ctrl-C (KeyboardInterrupt) ends it.

    Returns "reselect" (unix port only) when the next boot must load another slot's code."""
    from firmware import slots

    cause = _reset_cause()
    log = logmod.get("bdmeter")
    while True:
        t = None
        why = None
        try:
            t = Terminal(cfg_path, cause, root, slot)
            asyncio.run(t.run())
        except Reset as e:
            why = str(e)
        except Exception as e:  # noqa: BLE001 - a crash outside the tasks (the supervisor, start-up): reset too
            why = "crash: " + reason(e)
            sys.print_exception(e)
            import time

            time.sleep(_CRASH_PAUSE_S)
        finally:
            if t is not None:
                _close(t)
        try:
            log.warning("resetting: %s", why)
        except MemoryError:
            pass
        if t is not None:
            note_reset(t.reset_note, why)
        t = None
        gc.collect()
        try:
            import machine

            machine.reset()  # a board resets here; the unix port has no machine.reset
        except (ImportError, AttributeError):
            pass
        cause = "soft"
        asyncio.new_event_loop()
        if slots.next_boot(root) != slot:
            return "reselect"  # the unix port restarts in-process: main.py loads the other slot's code


def main(cfg_path=None, root="", slot="base"):
    """Run the terminal; returns "reselect" (unix port only) when the next boot must load another slot."""
    try:
        if _run(cfg_path, root, slot) == "reselect":
            return "reselect"
    except KeyboardInterrupt:
        pass
    for _ in range(3):
        try:
            logmod.get("bdmeter").info("stopped")
            break
        except KeyboardInterrupt:
            pass
