"""Simulated Quectel EC800M-class 4G modem with GNSS, served over TCP to the firmware's TcpUart.

An AT interpreter with the module's timing and quirks: echo on after boot,
boot URCs, SIM busy for a while, registration, APN and PDP context, TCP
sockets in buffer access mode bridged to REAL TCP connections on the host
(so MQTT reaches a real broker), TLS sockets over REAL TLS with the
certificates uploaded to the module's file system (modem_ssl.py, modem_files.py),
GNSS from a scenario (tools/sim/modem_gnss.py), and faults switchable at run
time. The newest TCP client is the UART; module state survives client reconnects (the module stays powered).

    python -m tools.sim.modem --port 7002 [--imei 861234567890123] [--lat 40.8425 --lon 111.749 --alt 1065]
        [--noise-m 3] [--cold-start-s 60] [--fake-fix-s 5] [--delay-scale 1] [--fast] [--seed 1]
        [--control-port 7102] [--apn private.apn] [--silent-open-on-deact] [--time-scale 1]

A restart (RDY) forgets every volatile setting, as the module does: echo comes
back on, CMEE, the context's APN (QICSGP), the GNSS constellation and NMEA
source, sockets, SSL contexts, RAM: files, the clock set with AT+CCLK and the PDP
context (flash files stay). With --apn the SIM is a private-APN SIM.

prints `READY port=<P>` when listening. The control port takes JSON lines and
answers each with one JSON line: `{"fault": "peer_close", "on": true}` (plus
the fault's parameters), `{"pin": "reset", "on": true}`, `{"get": "stats"}`,
`{"get": "state"}`, `{"get": "seen"}`, `{"get": "log"}` (the commands received, with `<RDY>` marks).
`{"fault": "gnss_time", "offset_s": 10800}` makes the receiver report a wrong UTC (network time stays right).
Network and GNSS time are the simulation's true time, which `--time-scale` (or `{"time_scale": 1440}`) runs
faster than the host's clock and `{"advance_s": 86400}` moves ahead, as the meter simulator's;
`{"get": "time"}` answers `{"time": <Unix seconds>, "time_scale": <x>}`.
"""

import argparse
import asyncio
import collections
import random
import sys
import threading
import time

from tools.sim.modem_basic import BasicMixin, SimTime
from tools.sim.modem_faults import FaultsMixin
from tools.sim.modem_files import FilesMixin
from tools.sim.modem_gnss import GnssMixin, GnssScenario
from tools.sim.modem_net import NetMixin, nodelay as _nodelay, split_args  # noqa: F401  (re-exported)
from tools.sim.modem_ssl import SslMixin
from tools.sim.peer import SimPeer

ERRTEXT = {3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted", 13: "SIM failure",
           14: "SIM busy", 50: "Incorrect parameters", 504: "Session is ongoing",
           405: "File not found", 407: "File already exists", 505: "Session not active",
           507: "Invalid NMEA source", 516: "Not fixed now", 572: "Operation not allowed", 563: "Socket identity used"}
# Module timing in seconds at delay_scale 1 (datasheet-like, shortened where only waiting would be tested).
DELAYS = {"resp": 0.005, "boot": 3.0, "boot_urc": 0.3, "cpin_busy": 2.0, "reg": 3.0, "qiact": 1.0, "qideact": 0.3,
          "qiopen": 0.2, "cfun": 0.5, "qiclose": 0.05, "gnss_cmd": 0.02}


class ModemSim(SimPeer, FaultsMixin, BasicMixin, GnssMixin, SslMixin, FilesMixin, NetMixin):
    """The simulated module; start() serves it on 127.0.0.1 from a background thread."""

    thread_name = "modem simulator"

    def __init__(self, imei="861234567890123", iccid="89860012345678901234", position=(40.8425, 111.7490, 1065.0),
                 noise_m=3.0, cold_start_s=2.0, fake_fix_s=1.0, delay_scale=1.0, seed=1, host="127.0.0.1", csq=21,
                 nmeasrc_required=False, boot_on_connect=True, apn_required="", silent_open_on_deact=False,
                 clock_error_s=0.0, time_scale=1.0):
        self.imei = imei
        self.iccid = iccid
        self.host = host
        self.csq = csq
        self.scale = delay_scale
        self.nmeasrc_required = nmeasrc_required  # EC2x: QGPSGNMEA needs QGPSCFG="nmeasrc",1 first (else 507)
        self.boot_on_connect = boot_on_connect
        # a private-APN SIM: data (PDP activation) only on this APN; "" accepts any
        self.apn_required = apn_required
        # no +QIOPEN result at all for a socket whose context went away while it was opening
        self.silent_open_on_deact = silent_open_on_deact
        self.clock_error_s = clock_error_s  # the module's clock after a restart, seconds off the true UTC
        self.sim_time = SimTime(time_scale)  # network and GNSS time: the simulation's true time
        self.log = collections.deque(maxlen=5000)  # (seconds since start, command line or "<RDY>")
        self._t0 = time.monotonic()
        self.rng = random.Random(seed)
        self.gnss = GnssScenario(position, noise_m, cold_start_s, fake_fix_s, seed)
        self.stats = dict.fromkeys(("at_commands", "tcp_bytes_up", "tcp_bytes_down", "clients", "urcs", "reboots",
                                    "dropped", "send_fail", "garbage_bytes", "qiopen_ok", "qiopen_fail",
                                    "urc_mid_response", "bytes_from_uart", "bytes_to_uart", "qiact_refused",
                                    "qideact", "tls_hs_up", "tls_hs_down"), 0)
        self.seen = {}  # command name -> count
        self.faults = {}
        self.port = None
        self.control_port = None
        self._loop = None
        self._thread = None
        self._servers = []
        self._writer = None
        self._ever_booted = False
        self._gen = 0
        self._pins = {"reset": False, "pwrkey": False}
        self._init_files()
        self._init_ssl()
        self._power_state(False)

    # -- module state -----------------------------------------------------------------
    def _power_state(self, powered):
        self.powered = powered
        self.booted = False
        self.echo = True
        self.cmee = 0
        self.cfun = 1
        self.boot_t = 0.0
        self.reg_t = 0.0
        self.apn = ("", "", "", 0)
        self.pdp = "inactive"  # active | broken (pdpdeact seen: QIDEACT needed)
        self.ip = None
        self.gnss_on = False
        self.gnss_t = 0.0
        self.gnssconfig = 1
        self.nmeasrc = 0
        self._cfun0 = False
        self._inbuf = bytearray()
        self._data_need = None  # (byte count, handler) while raw data (QISEND, QSSLSEND, QFUPL) is awaited
        self.faults.pop("hang", None)
        self.faults.pop("stack_degraded", None)
        self.sockets = {}
        self._files_restart()
        self._ssl_restart()
        self._clock_restart()

    def _now(self):
        return self._loop.time()

    def _d(self, name):
        return DELAYS[name] * self.scale

    async def _sleep(self, seconds):
        if seconds > 0:
            await asyncio.sleep(seconds)

    def _reboot(self):
        """Restart the module: drop sockets and PDP, echo on, RDY and boot URCs after the boot time."""
        self._drop_sockets(urc=False)
        self._power_state(True)
        self._gen += 1
        self._ever_booted = True
        self.stats["reboots"] += 1
        self.boot_t = self._now()
        self.reg_t = self.boot_t + self._d("boot") + self._d("reg")
        asyncio.ensure_future(self._boot(self._gen))

    async def _boot(self, gen):
        await self._sleep(self._d("boot"))
        if gen != self._gen or not self.powered:
            return
        self.booted = True
        self.log.append((round(time.monotonic() - self._t0, 3), "<RDY>"))
        self._urc("RDY")
        gap = self._d("boot_urc")
        for urc, wait in (("+CFUN: 1", gap), ("+CPIN: READY", max(0.0, self._d("cpin_busy") - gap)),
                          ("+QIND: SMS DONE", gap)):
            await self._sleep(wait)
            if gen != self._gen:
                return
            self._urc(urc)

    def _power_down(self, urc=True):
        if self.powered and urc and self.booted:
            self._out(b"\r\nPOWERED DOWN\r\n")
        self._drop_sockets(urc=False)
        self._gen += 1
        self._power_state(False)

    @property
    def hung(self):
        h = self.faults.get("hang")
        if h is None:
            return False
        if h is not True and self._now() >= h:
            self.faults.pop("hang", None)
            return False
        return True

    # -- output -------------------------------------------------------------------------
    def _out(self, data):
        w = self._writer
        if w is not None and not w.is_closing():
            w.write(data)
            self.stats["bytes_to_uart"] += len(data)

    def _urc(self, line):
        if not self.booted or self.hung:
            return
        self.stats["urcs"] += 1
        self._out(b"\r\n" + line.encode() + b"\r\n")

    def _err(self, code):
        if self.cmee == 0 or code is None:
            return "ERROR"
        if self.cmee == 2 and code in ERRTEXT:
            return "+CME ERROR: %s" % ERRTEXT[code]
        return "+CME ERROR: %d" % code

    def _respond(self, lines=(), final="OK", raw=None):
        """Info lines, optional raw bytes, then the final result; a pending urc_mid_response goes before it."""
        out = bytearray()
        for line in lines:
            out += b"\r\n" + line.encode() + b"\r\n"
        if raw is not None:
            out += raw + b"\r\n"
        left = self.faults.get("urc_mid_response")
        if left and (lines or raw is not None):
            out += b'\r\n+QIND: "csq",%d,99\r\n' % self.csq
            self.stats["urcs"] += 1
            self.stats["urc_mid_response"] += 1
            if left is not True:
                if left <= 1:
                    self.faults.pop("urc_mid_response")
                else:
                    self.faults["urc_mid_response"] = left - 1
        out += b"\r\n" + final.encode() + b"\r\n"
        self._out(bytes(out))

    # -- public, thread-safe ------------------------------------------------------------------
    def _call(self, fn, *args, **kw):
        if self._loop is None or threading.current_thread() is self._thread:
            return fn(*args, **kw)

        async def run():
            return fn(*args, **kw)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def set_fault(self, name, on=True, **params):
        """Switch a fault on (with its parameters) or off; one-shot faults act at once."""
        self._call(self._apply_fault, name, on, **params)

    def pin(self, name, on):
        """Drive the module's 'reset' or 'pwrkey' input (a pulse of pwrkey toggles power)."""
        self._call(self._apply_pin, name, on)

    def state(self):
        return self._call(lambda: {"powered": self.powered, "booted": self.booted, "echo": self.echo,
                                   "cfun": self.cfun, "pdp": self.pdp, "gnss_on": self.gnss_on,
                                   "faults": sorted(self.faults), "sockets": {
                                       str(s.id): s.state for s in self.sockets.values()}})

    def _close_extra(self):
        self._drop_sockets(urc=False)

    async def _client(self, reader, writer):
        _nodelay(writer)
        old, self._writer = self._writer, writer
        if old is not None:
            old.close()  # the newest client is the UART
        self.stats["clients"] += 1
        self._inbuf = bytearray()
        self._data_need = None
        if self.boot_on_connect and not self._ever_booted:
            self._reboot()
        try:
            while self._writer is writer:
                data = await reader.read(4096)
                if not data:
                    break
                self.stats["bytes_from_uart"] += len(data)
                if not self.powered or not self.booted:
                    continue  # a module that is off or booting hears nothing
                self._inbuf += data
                await self._consume()
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # shutting down
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None

    async def _consume(self):
        buf = self._inbuf
        while buf:
            if self._data_need is not None:
                n, handler = self._data_need
                if len(buf) < n:
                    return
                payload = bytes(buf[:n])
                del buf[:n]
                self._data_need = None
                handler(payload)
                continue
            i = min((k for k in (buf.find(b"\r"), buf.find(b"\n")) if k >= 0), default=-1)
            if i < 0:
                if len(buf) > 4096:
                    buf.clear()
                return
            raw = bytes(buf[:i])
            del buf[:i + 1]
            line = raw.decode("latin-1").strip()
            if not line:
                continue
            if self.hung or not self.booted:
                self.stats["dropped"] += 1
                continue
            if self.echo:
                self._out(raw + b"\r")
            self.stats["at_commands"] += 1
            self.log.append((round(time.monotonic() - self._t0, 3), line))
            await self._sleep(self._d("resp"))
            gen = self._gen
            try:
                await self._command(line)
            except (ValueError, IndexError, KeyError):
                if gen == self._gen:
                    self._respond(final=self._err(50))

    async def _command(self, line):
        u = line.upper()
        if not u.startswith("AT"):
            self._respond(final="ERROR")
            return
        if u in ("AT", "AT&W", "AT&F"):
            self._respond()
            return
        if u.startswith("ATE"):
            self.echo = u[3:] != "0"
            self._respond()
            return
        if u in ("ATI", "AT+GMR", "AT+CGMR"):
            self._respond(["Quectel", "EC800M", "Revision: EC800MCNLAR06A03M08"] if u == "ATI"
                          else ["EC800MCNLAR06A03M08"])
            return
        body = line[2:]
        name = body
        kind, args = "exec", []
        for i, ch in enumerate(body):
            if ch in "=?":
                name = body[:i]
                if body[i:] == "=?":
                    kind = "test"
                elif ch == "?":
                    kind = "query"
                else:
                    kind, args = "set", split_args(body[i + 1:])
                break
        name = name.upper()
        self.seen[name] = self.seen.get(name, 0) + 1
        handler = getattr(self, "_at_" + name[1:].lower(), None) if name.startswith("+") else None
        if handler is None:
            self._respond(final="ERROR")
            return
        await handler(kind, args)

    # -- control port -----------------------------------------------------------------------------
    def command(self, req):
        """One control request (a dict) -> its answer (a dict); runs in the loop thread."""
        if "fault" in req:
            params = {k: v for k, v in req.items() if k not in ("fault", "on")}
            self._apply_fault(req["fault"], bool(req.get("on", True)), **params)
            return {"ok": True}
        if "pin" in req:
            self._apply_pin(req["pin"], bool(req.get("on", True)))
            return {"ok": True}
        if "time_scale" in req:
            self.sim_time.set_scale(float(req["time_scale"]))
            return {"ok": True}
        if "advance_s" in req:
            self.sim_time.advance(float(req["advance_s"]))
            return {"ok": True}
        what = req.get("get")
        if what == "stats":
            return {"stats": dict(self.stats)}
        if what == "seen":
            return {"seen": dict(self.seen)}
        if what == "state":
            return {"state": self.state()}
        if what == "log":
            return {"log": list(self.log)}
        if what == "time":
            return {"time": self.sim_time.now(), "time_scale": self.sim_time.scale}
        raise ValueError("unknown request %r" % (req,))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.sim.modem", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="TCP port the UART is served on (0: any free port)")
    ap.add_argument("--imei", default="861234567890123", help="IMEI the module reports (AT+CGSN)")
    ap.add_argument("--iccid", default="89860012345678901234", help="SIM ICCID the module reports (AT+QCCID)")
    ap.add_argument("--lat", type=float, default=40.8425, help="true latitude of the antenna, degrees")
    ap.add_argument("--lon", type=float, default=111.7490, help="true longitude of the antenna, degrees")
    ap.add_argument("--alt", type=float, default=1065.0, help="true altitude of the antenna, metres")
    ap.add_argument("--noise-m", type=float, default=3.0, help="standard deviation of the GNSS position noise, metres")
    ap.add_argument("--cold-start-s", type=float, default=60.0, help="seconds without a fix after AT+QGPS=1")
    ap.add_argument("--fake-fix-s", type=float, default=5.0,
                    help="seconds of an early fake fix (0 satellites, HDOP 0.00) after the cold start")
    ap.add_argument("--delay-scale", type=float, default=1.0, help="factor on every module delay (boot, QIACT, ...)")
    ap.add_argument("--fast", action="store_true", help="no module delays (delay scale 0)")
    ap.add_argument("--nmeasrc-required", action="store_true", help="answer 507 until nmeasrc is set (EC2x)")
    ap.add_argument("--apn", default="",
                    help="a private-APN SIM: PDP activation only on this APN (empty: any APN is accepted)")
    ap.add_argument("--silent-open-on-deact", action="store_true",
                    help="send no +QIOPEN result for a socket whose context was deactivated while it was opening "
                         "(otherwise +QIOPEN: <id>,570)")
    ap.add_argument("--clock-error-s", type=float, default=0.0,
                    help="seconds the module's clock (AT+CCLK) is off the true UTC after each restart")
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="network and GNSS time run this many times faster than the host's clock (1440: a day a "
                         "minute), from the host's time at start")
    ap.add_argument("--seed", type=int, default=1, help="seed of the GNSS noise and other random choices")
    ap.add_argument("--control-port", type=int, default=None,
                    help="TCP port of the JSON-lines control port (faults, pins, stats); none when omitted")
    args = ap.parse_args(argv)
    sim = ModemSim(imei=args.imei, iccid=args.iccid, position=(args.lat, args.lon, args.alt), noise_m=args.noise_m,
                   cold_start_s=args.cold_start_s, fake_fix_s=args.fake_fix_s,
                   delay_scale=0.0 if args.fast else args.delay_scale, seed=args.seed,
                   nmeasrc_required=args.nmeasrc_required, apn_required=args.apn,
                   silent_open_on_deact=args.silent_open_on_deact, clock_error_s=args.clock_error_s,
                   time_scale=args.time_scale)
    return sim.serve(args.port, args.control_port)


if __name__ == "__main__":
    sys.exit(main())
