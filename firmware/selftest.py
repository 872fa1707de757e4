"""Installer self-test: meter bus, modem, SIM, network, GNSS, clock, broker and flash checked within two minutes.

From the REPL on a board (the terminal's config.json in place):

    import firmware.selftest as s; s.main()

It prints a checklist with one verdict per line, shows the result on the status LED (steady: all ok; N short
blinks, repeated: line N failed; slow blink: only warnings) and sends a `selftest` event (queued in the outbox
when the broker cannot be reached, so it goes out with the terminal's next connection). A line that cannot be
checked because an earlier one failed says `skip`, so the first failure is the one to fix.
"""

import asyncio
import os

import nmea
import quectel
from atengine import ATEngineError, ATError
from mpcompat import ticks_diff, ticks_ms

from firmware.clock import civil, epoch

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
# step limits in seconds; together with the event and the LED they stay within two minutes
LIMITS = {"total": 100, "at": 15, "sim": 10, "reg": 40, "gnss": 30, "broker": 25, "event": 8, "led_reps": 2}
_MIN_FREE = 64 * 1024  # flash free below this: warning (the outbox and the config need room)
_MIN_FREE_FAIL = 16 * 1024
_CSQ_WEAK = 10  # CSQ below this (-93 dBm) is a warning
_REG = {0: "not searching", 1: "home network", 2: "searching", 3: "registration denied", 4: "unknown",
        5: "roaming"}
_SIM_ERR = {10: "no SIM inserted", 13: "SIM failure", 15: "wrong SIM type"}


class SelfTest:
    def __init__(self, t, limits=None):
        self.t = t
        self.limits = dict(LIMITS)
        self.limits.update(limits or {})
        self.lines = []  # [name, verdict, detail] in checklist order
        self.session = None
        self._t0 = ticks_ms()

    # -- bookkeeping ---------------------------------------------------------------------
    def _line(self, name, verdict, detail):
        for line in self.lines:
            if line[0] == name:
                line[1], line[2] = verdict, detail
                return
        self.lines.append([name, verdict, detail])

    def _left_ms(self, step):
        """What a step may take: its own limit, cut to what is left of the total."""
        left = self.limits["total"] * 1000 - ticks_diff(ticks_ms(), self._t0)
        return max(0, min(self.limits[step] * 1000, left))

    def _failed(self, *names):
        return any(line[0] in names and line[1] in (FAIL, SKIP) for line in self.lines)

    # -- checks --------------------------------------------------------------------------
    def check_flash(self):
        d = self.t.cfg["state_dir"]
        try:
            st = os.statvfs(d)
            free = st[0] * st[4]
            probe = d + "/.selftest"
            with open(probe, "w") as f:
                f.write("x")
            os.remove(probe)
        except OSError as e:
            self._line("flash", FAIL, "%s not writable: %s" % (d, e))
            return
        verdict = OK if free >= _MIN_FREE else (WARN if free >= _MIN_FREE_FAIL else FAIL)
        self._line("flash", verdict, "%d KB free in %s, writable" % (free // 1024, d))

    async def check_meters(self):
        t = self.t
        addrs = list(t.cfg["meters"])
        if not addrs:
            try:
                addrs = [await t.master.read_address()]
            except Exception as e:  # noqa: BLE001 - any bus failure is this line's verdict
                self._line("meter bus", FAIL, "no meter answers the address query (%s): check A/B wiring, "
                           "baud (%d)" % (_why(e), t.cfg["meter_baud"]))
                return
        for addr in addrs:
            if self._left_ms("total") <= 0:
                self._line("meter " + addr, SKIP, "out of time")
                continue
            try:
                kwh = await t.master.read(addr, 0x00010000)
                self._line("meter " + addr, OK, "answers: %s kWh forward active" % (kwh,))
            except Exception as e:  # noqa: BLE001
                self._line("meter " + addr, FAIL, "no answer (%s): check address, A/B wiring, baud %d"
                           % (_why(e), t.cfg["meter_baud"]))

    async def _at(self, text, ms=None):
        return await self.t.modem.at.cmd(text, ms or self.t.modem.timeouts["cmd"])

    async def check_modem(self):
        m = self.t.modem
        m.at.start()
        ok = await self._probe(3000)
        if not ok and m.pwrkey:
            m.pwrkey.on()
            await asyncio.sleep_ms(m.timeouts["pulse"])
            m.pwrkey.off()
            ok = await self._probe(self._left_ms("at"))
        if not ok:
            self._line("modem", FAIL, "no answer to AT: check its supply, PWRKEY, UART wiring and level shifter")
            return False
        try:
            await self._at("AT+CMEE=1")  # numeric +CME ERROR codes: "no SIM" can then be told from "SIM busy"
            m.imei = quectel.parse_imei(await self._at("AT+CGSN")) or m.imei
        except ATEngineError:
            pass
        self._line("modem", OK, "answers AT, IMEI %s" % m.imei)
        return True

    async def _probe(self, limit_ms):
        t0 = ticks_ms()
        while True:
            try:
                await self._at("AT", 500)
                return True
            except ATEngineError:
                pass
            if ticks_diff(ticks_ms(), t0) >= limit_ms:
                return False
            await asyncio.sleep_ms(500)

    async def check_sim(self):
        t0, state = ticks_ms(), "no answer"
        while True:
            try:
                for line in await self._at("AT+CPIN?"):
                    if line.startswith("+CPIN:"):
                        state = line[6:].strip()
                if state == "READY":
                    iccid = None
                    try:
                        iccid = quectel.parse_iccid(await self._at("AT+QCCID"))
                    except ATEngineError:
                        pass
                    self.t.modem.iccid = iccid or self.t.modem.iccid
                    self._line("SIM", OK, "ready, ICCID %s" % iccid)
                    return True
                if state != "no answer":
                    self._line("SIM", FAIL, "SIM asks for %s" % state)
                    return False
            except ATError as e:
                state = _SIM_ERR.get(e.code, "SIM error %s" % e.code) if e.code is not None else "SIM error"
            except ATEngineError as e:
                state = _why(e)
            if ticks_diff(ticks_ms(), t0) >= self._left_ms("sim"):
                self._line("SIM", FAIL, state)
                return False
            await asyncio.sleep_ms(500)

    async def check_registration(self):
        t0, stat = ticks_ms(), None
        while True:
            try:
                stat = quectel.parse_cereg(await self._at("AT+CEREG?"))
            except ATEngineError:
                pass
            if stat in (1, 5):
                self._line("registration", OK, "registered (%s)" % _REG[stat])
                return True
            if stat == 3 or ticks_diff(ticks_ms(), t0) >= self._left_ms("reg"):
                self._line("registration", FAIL, "not registered within %d s: %s (antenna, coverage, SIM plan)"
                           % (ticks_diff(ticks_ms(), t0) // 1000, _REG.get(-1 if stat is None else stat, "no answer")))
                return False
            await asyncio.sleep_ms(1000)

    async def check_signal(self):
        try:
            csq = quectel.parse_csq(await self._at("AT+CSQ"))
        except ATEngineError as e:
            self._line("signal", FAIL, _why(e))
            return
        self.t.csq = csq
        if csq is None or csq == 0:
            self._line("signal", FAIL, "no signal (CSQ %s): check the LTE antenna" % csq)
        else:
            self._line("signal", OK if csq >= _CSQ_WEAK else WARN, "CSQ %d (%d dBm)%s"
                       % (csq, 2 * csq - 113, "" if csq >= _CSQ_WEAK else ": weak, move the antenna"))

    async def start_gnss(self):
        try:
            await self.t.modem.gnss_start()
            return True
        except ATEngineError as e:
            self._line("GNSS", FAIL, "receiver refused to start: %s" % _why(e))
            return False

    async def check_gnss(self, started_ms):
        t, best = self.t, 0
        while True:
            gga = rmc = None
            try:
                for line in await t.modem.gnss_nmea():
                    try:
                        s = nmea.parse(line)
                    except nmea.NMEAError:
                        continue
                    if s.kind == "GGA":
                        gga = s
                    elif s.kind == "RMC":
                        rmc = s
            except ATEngineError:
                pass
            if gga is not None:
                best = max(best, gga.nsat or 0)
                if gga.fix and (gga.nsat or 0) >= t.cfg["min_sats"]:
                    if rmc is not None and rmc.fix and rmc.date and rmc.utc:
                        t.clock.set(epoch(*(rmc.date + rmc.utc)), "gnss")
                    self._line("GNSS", OK, "fix, %d satellites, HDOP %s" % (gga.nsat, gga.hdop))
                    return
            if ticks_diff(ticks_ms(), started_ms) >= self._left_ms("gnss"):
                break
            await asyncio.sleep_ms(2000)
        if best:
            self._line("GNSS", WARN, "no fix yet, %d satellites in view (a cold start takes 1-2 min)" % best)
        else:
            self._line("GNSS", FAIL, "no satellites: check the GNSS antenna and its view of the sky")

    async def check_clock(self, registered):
        t = self.t
        if t.clock.source in ("none", "rtc") and registered:
            try:
                nt = await t.modem.network_time()
                if nt:
                    t.clock.set(epoch(*nt), "net")
            except ATEngineError:
                pass
        src = t.clock.source
        if src in ("gnss", "net"):
            y, mo, d, h, mi, s = civil(t.clock.now())[:6]
            self._line("clock", OK, "%04d-%02d-%02d %02d:%02d:%02d UTC from %s" % (y, mo, d, h, mi, s, src))
        elif src == "rtc":
            self._line("clock", WARN, "only the board's RTC: neither GNSS nor the network gave the time")
        else:
            self._line("clock", FAIL, "no time source: neither GNSS nor the network gave the time")

    async def check_broker(self):
        t = self.t
        cfg = t.cfg
        where = "%s:%d" % (cfg["broker_host"], cfg["broker_port"])
        try:
            await asyncio.wait_for_ms(t.modem.start(), self._left_ms("broker"))
            t.imei, t.iccid = t.modem.imei, t.modem.iccid
            if not t.tid:
                t.tid = t.imei
                t.commands.auth.tid = t.tid
            self.session = await asyncio.wait_for_ms(t.uplink._connect(), self._left_ms("broker"))
        except asyncio.TimeoutError:
            self._line("broker", FAIL, "%s: no MQTT session within %d s" % (where, self.limits["broker"]))
            return
        except t.link_errors as e:
            self._line("broker", FAIL, "%s unreachable: %s" % (where, _why(e)))
            return
        self._line("broker", OK, "MQTT session to %s as %s (plain TCP)" % (where, t.tid))

    # -- the whole run ------------------------------------------------------------------
    async def run(self):
        t = self.t
        for name in ("flash", "meter bus", "modem", "SIM", "registration", "signal", "GNSS", "clock", "broker"):
            self._line(name, SKIP, "not checked")
        if t.cfg["meters"]:
            self.lines = [line for line in self.lines if line[0] != "meter bus"]
            for i, addr in enumerate(t.cfg["meters"]):
                self.lines.insert(1 + i, ["meter " + addr, SKIP, "not checked"])
        self.check_flash()
        registered = gnss_on = False
        if await self.check_modem():
            gnss_t0 = ticks_ms()
            gnss_on = await self.start_gnss()  # acquires while the SIM, the network and the meters are checked
            if await self.check_sim():
                registered = await self.check_registration()
                await self.check_signal()
            else:
                self._line("registration", SKIP, "needs a SIM")
                self._line("signal", SKIP, "needs a SIM")
        else:
            for name in ("SIM", "registration", "signal", "GNSS"):
                self._line(name, SKIP, "needs the modem")
        await self.check_meters()
        if gnss_on:
            await self.check_gnss(gnss_t0)
        await self.check_clock(registered)
        if registered:
            await self.check_broker()
        else:
            self._line("broker", SKIP, "needs network registration")
        return self.finish()

    def finish(self):
        fails = [line[0] for line in self.lines if line[1] == FAIL]
        warns = [line[0] for line in self.lines if line[1] == WARN]
        return {"ok": not fails, "fail": fails, "warn": warns, "lines": [list(line) for line in self.lines],
                "s": ticks_diff(ticks_ms(), self._t0) // 1000, "led": led_text(self.lines)}

    async def send_event(self, result):
        """The `selftest` event into the outbox, then (with a session) out to the broker, oldest record first."""
        t = self.t
        t.emit_event("selftest", {"ok": result["ok"], "fail": result["fail"], "warn": result["warn"],
                                  "lines": result["lines"], "s": result["s"]})
        s = self.session
        if s is None:
            return False
        t0 = ticks_ms()
        try:
            while s.connected and ticks_diff(ticks_ms(), t0) < self.limits["event"] * 1000:
                recs = t.outbox.peek(1)
                if not recs:
                    await s.disconnect()
                    return True
                seq, kind, text = recs[0]
                await asyncio.wait_for_ms(s.publish(t.uplink.topic(kind), text, qos=1),
                                          self.limits["event"] * 1000)
                t.outbox.ack(seq)
        except (asyncio.TimeoutError,) + t.link_errors as e:
            t.log.warning("self-test event not sent now (%s): it stays in the outbox", _why(e))
        s.close()
        return False


def led_pattern(lines, reps=2):
    """(on_ms, off_ms) steps: steady 3 s when all is ok; N short blinks then a pause, repeated, when line N
    failed first; slow blinks when there are only warnings."""
    for i, line in enumerate(lines):
        if line[1] == FAIL:
            return ([(250, 250)] * (i + 1) + [(0, 1250)]) * reps
    if any(line[1] == WARN for line in lines):
        return [(1000, 1000)] * 2 * reps
    return [(3000, 0)]


def led_text(lines):
    for i, line in enumerate(lines):
        if line[1] == FAIL:
            return "%d short blinks, repeated: line %d (%s) failed" % (i + 1, i + 1, line[0])
    if any(line[1] == WARN for line in lines):
        return "slow blinks: warnings only"
    return "steady on: all ok"


async def show(led, pattern):
    for on_ms, off_ms in pattern:
        if on_ms:
            led.on()
            await asyncio.sleep_ms(on_ms)
        led.off()
        await asyncio.sleep_ms(off_ms)
    if pattern == [(3000, 0)]:
        led.on()  # all ok: leave it lit


def checklist(result, tid, board):
    out = ["bdmeter self-test: terminal %s, board %s" % (tid, board)]
    for i, (name, verdict, detail) in enumerate(result["lines"]):
        out.append("%2d %-20s %-4s %s" % (i + 1, name, verdict, detail))
    out.append("verdict: %s in %d s; LED: %s" % ("PASS" if result["ok"] else "FAIL: " + ", ".join(result["fail"]),
                                                 result["s"], result["led"]))
    return "\n".join(out)


async def _feed(watchdog):
    # A board's watchdog, once started (by the interrupted terminal, or by building the terminal here), cannot be
    # stopped: keep feeding it while the self-test runs; afterwards it resets the board into the terminal.
    while True:
        watchdog.feed()
        await asyncio.sleep_ms(1000)


async def _run(t, limits):
    feeder = asyncio.create_task(_feed(t.watchdog))
    try:
        return await _checked(t, limits)
    finally:
        feeder.cancel()


async def _checked(t, limits):
    st = SelfTest(t, limits)
    result = await st.run()
    print(checklist(result, t.tid or t.modem.imei, t.cfg["board"]))
    sent = await st.send_event(result)
    result["event_sent"] = sent
    print("selftest event %s" % ("sent" if sent else "queued in the outbox (sent on the next connection)"))
    await show(t.led, led_pattern(result["lines"], st.limits["led_reps"]))
    return result


def main(cfg_path=None, limits=None):
    """Run the self-test with the terminal's configuration; returns the result dict (also printed)."""
    from firmware import app

    t = app.Terminal(cfg_path, "selftest")
    try:
        return asyncio.run(_run(t, limits))
    finally:
        t.close()


def _why(e):
    return str(e) or type(e).__name__
