"""tools/sim/modem from CPython: AT answers, boot URCs, sockets bridged to real TCP, byte counters, faults, GNSS."""

import datetime
import json
import math
import re
import socket
import statistics
import sys
import threading
import time

import pynmea2
import pytest

from harness import LOOPBACK, Proc
from tools.sim.modem import ModemSim, split_args
from tools.sim.modem_gnss import GnssScenario, checksum, ddmm

FINAL = re.compile(rb"\r\n(OK|ERROR|SEND OK|SEND FAIL|\+CME ERROR: [^\r]*|\+CMS ERROR: [^\r]*)\r\n|\r\n> ")
SCALE = 0.02


class Uart:
    """The firmware's side of the wire, by hand."""

    def __init__(self, port):
        self.s = socket.create_connection((LOOPBACK, port), timeout=5)
        self.buf = b""

    def _fill(self, deadline):
        self.s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = self.s.recv(65536)
        except TimeoutError:
            return
        if not d:
            raise ConnectionError("simulator closed the UART")
        self.buf += d

    def wait(self, needle, timeout=3.0):
        """Everything up to and including `needle` (bytes)."""
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            if time.monotonic() >= deadline:
                raise TimeoutError("%r not seen; have %r" % (needle, self.buf[-200:]))
            self._fill(deadline)
        i = self.buf.index(needle) + len(needle)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def cmd(self, text, timeout=3.0):
        """Send a command; the bytes up to its final result (or prompt), URCs before it included."""
        self.s.sendall(text.encode() + b"\r")
        deadline = time.monotonic() + timeout
        while True:
            m = FINAL.search(self.buf)
            if m:
                out, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return out
            if time.monotonic() >= deadline:
                raise TimeoutError("%s: no final result; have %r" % (text, self.buf[-200:]))
            self._fill(deadline)

    def quiet(self, seconds):
        """Bytes that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._fill(deadline)
        out, self.buf = self.buf, b""
        return out

    def close(self):
        self.s.close()


class Echo:
    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind((LOOPBACK, 0))
        self.srv.listen(4)
        self.srv.settimeout(5)
        self.port = self.srv.getsockname()[1]
        self.conn = None
        self.got = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            self.conn, _ = self.srv.accept()
        except OSError:
            return
        self.got.set()
        try:
            while True:
                d = self.conn.recv(65536)
                if not d:
                    return
                self.conn.sendall(d)
        except OSError:
            return

    def close(self):
        self.srv.close()
        if self.conn is not None:
            self.conn.close()


@pytest.fixture
def sim():
    s = ModemSim(delay_scale=SCALE, cold_start_s=0.3, fake_fix_s=0.3, seed=2)
    s.start()
    yield s
    s.stop()


def booted(sim, setup=True):
    u = Uart(sim.port)
    u.wait(b"+QIND: SMS DONE\r\n")
    if setup:
        assert u.cmd("ATE0").endswith(b"\r\nOK\r\n")
        u.cmd("AT+CMEE=1")
        deadline = time.monotonic() + 3
        while b"+CEREG: 0,1" not in u.cmd("AT+CEREG?"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    return u


def pdp_up(u):
    u.cmd('AT+QICSGP=1,1,"cmnet","","",0')
    assert u.cmd("AT+QIACT=1").endswith(b"\r\nOK\r\n")


def test_split_args():
    assert split_args('1,0,"TCP","a,b",80,0,0') == ["1", "0", "TCP", "a,b", "80", "0", "0"]
    assert split_args('"RMC"') == ["RMC"] and split_args("") == [] and split_args('1,""') == ["1", ""]


def test_boot_urcs_echo_and_sim_busy(sim):
    u = Uart(sim.port)
    boot = u.wait(b"+QIND: SMS DONE\r\n")
    assert re.fullmatch(rb"\r\nRDY\r\n\r\n\+CFUN: 1\r\n\r\n\+CPIN: READY\r\n\r\n\+QIND: SMS DONE\r\n", boot)
    assert u.cmd("AT") == b"AT\r\r\nOK\r\n"  # echo on after boot
    assert u.cmd("ATE0") == b"ATE0\r\r\nOK\r\n"
    assert u.cmd("AT") == b"\r\nOK\r\n"
    assert u.cmd("AT+FOO") == b"\r\nERROR\r\n"  # unknown; CMEE 0: plain ERROR
    u.cmd("AT+CMEE=1")
    assert u.cmd("AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert u.cmd("AT+CGSN") == b"\r\n%s\r\n\r\nOK\r\n" % sim.imei.encode()
    assert u.cmd("AT+QCCID") == b"\r\n+QCCID: %s\r\n\r\nOK\r\n" % sim.iccid.encode()
    assert u.cmd("AT+CSQ") == b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n"
    u.close()


def test_cpin_busy_right_after_boot():
    s = ModemSim(delay_scale=0.2)
    s.start()
    try:
        u = Uart(s.port)
        u.wait(b"RDY\r\n")
        assert u.cmd("AT+CPIN?").endswith(b"\r\nERROR\r\n")  # CMEE 0: no code yet
        u.cmd("ATE0")
        u.cmd("AT+CMEE=1")
        assert re.search(rb"\+CME ERROR: 1[04]\r\n$", u.cmd("AT+CPIN?"))
        assert b"+CEREG: 0,2" in u.cmd("AT+CEREG?")  # searching
        u.wait(b"+CPIN: READY\r\n", timeout=3)
        assert b"+CPIN: READY\r\n\r\nOK" in u.cmd("AT+CPIN?")
        u.close()
    finally:
        s.stop()


def test_registration_pdp_and_time(sim):
    u = booted(sim)
    assert u.cmd("AT+QIACT?") == b"\r\nOK\r\n"
    pdp_up(u)
    assert re.fullmatch(rb'\r\n\+QIACT: 1,1,1,"10\.\d+\.\d+\.\d+"\r\n\r\nOK\r\n', u.cmd("AT+QIACT?"))
    assert u.cmd("AT+QIACT=1") == b"\r\nERROR\r\n"  # already active
    m = re.search(rb'\+QLTS: "(\d+/\d+/\d+,\d+:\d+:\d+)\+32,0"', u.cmd("AT+QLTS=1"))
    t = datetime.datetime.strptime(m.group(1).decode(), "%Y/%m/%d,%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    assert abs((t - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 5
    assert u.cmd("AT+CFUN?") == b"\r\n+CFUN: 1\r\n\r\nOK\r\n"
    u.cmd("AT+CFUN=0")
    assert b"+CEREG: 0,0" in u.cmd("AT+CEREG?") and u.cmd("AT+QIACT?") == b"\r\nOK\r\n"
    u.close()


def test_socket_bridges_real_tcp_and_counts_bytes(sim):
    echo = Echo()
    try:
        u = booted(sim)
        pdp_up(u)
        assert u.cmd('AT+QIOPEN=1,0,"TCP","127.0.0.1",%d,0,0' % echo.port) == b"\r\nOK\r\n"
        u.wait(b"+QIOPEN: 0,0\r\n")
        assert echo.got.wait(5)
        assert u.cmd("AT+QISEND=0,5") == b"\r\n> "
        u.s.sendall(b"he\r\nl")
        assert u.wait(b"\r\nSEND OK\r\n") == b"\r\nSEND OK\r\n"
        u.wait(b'+QIURC: "recv",0\r\n')
        assert u.cmd("AT+QISEND=0,4") == b"\r\n> "
        u.s.sendall(b"lo!!")
        u.wait(b"SEND OK\r\n")
        time.sleep(0.2)
        assert b"recv" not in u.quiet(0.1)  # announced once until drained
        assert u.cmd("AT+QIRD=0,3") == b"\r\n+QIRD: 3\r\nhe\r\r\n\r\nOK\r\n"
        assert u.cmd("AT+QIRD=0,1500") == b"\r\n+QIRD: 6\r\n\nllo!!\r\n\r\nOK\r\n"
        assert u.cmd("AT+QIRD=0,0") == b"\r\n+QIRD: 9,9,0\r\n\r\nOK\r\n"
        assert u.cmd("AT+QIRD=0,1500") == b"\r\n+QIRD: 0\r\n\r\nOK\r\n"
        assert sim.stats["tcp_bytes_up"] == sim.stats["tcp_bytes_down"] == 9
        assert u.cmd("AT+QISEND=0,0") == b"\r\n+QISEND: 9,9,0\r\n\r\nOK\r\n"
        assert b'+QISTATE: 0,"TCP","127.0.0.1",%d,0,2' % echo.port in u.cmd("AT+QISTATE=1,0")
        assert u.cmd("AT+QISEND=0,1461") == b"\r\nERROR\r\n"
        assert u.cmd("AT+QISEND=3,5") == b"\r\nERROR\r\n"  # not open
        sim.set_fault("peer_close")
        u.wait(b'+QIURC: "closed",0\r\n')
        assert u.cmd("AT+QISEND=0,1") == b"\r\nERROR\r\n"
        u.cmd('AT+QIOPEN=1,0,"TCP","127.0.0.1",%d,0,0' % echo.port)
        u.wait(b"+QIOPEN: 0,563\r\n")  # not QICLOSEd yet
        u.cmd("AT+QICLOSE=0")
        dead = socket.socket()
        dead.bind((LOOPBACK, 0))
        port = dead.getsockname()[1]
        dead.close()
        u.cmd('AT+QIOPEN=1,0,"TCP","127.0.0.1",%d,0,0' % port)
        u.wait(b"+QIOPEN: 0,566\r\n")  # connection refused
        assert sim.stats["qiopen_ok"] == 1 and sim.stats["qiopen_fail"] == 1
        assert sim.seen["+QISEND"] == 6 and sim.stats["at_commands"] > 20
        u.close()
    finally:
        echo.close()


def test_faults_send_fail_hang_garbage_urc_mid_response(sim):
    echo = Echo()
    try:
        u = booted(sim)
        pdp_up(u)
        u.cmd('AT+QIOPEN=1,0,"TCP","127.0.0.1",%d,0,0' % echo.port)
        u.wait(b"+QIOPEN: 0,0\r\n")
        sim.set_fault("send_fail", n=2)
        for want in (b"SEND FAIL", b"SEND FAIL", b"SEND OK"):
            assert u.cmd("AT+QISEND=0,2") == b"\r\n> "
            u.s.sendall(b"ab")
            assert u.wait(want + b"\r\n") == b"\r\n" + want + b"\r\n"
        assert sim.stats["send_fail"] == 2 and sim.stats["tcp_bytes_up"] == 2
        u.wait(b'+QIURC: "recv",0\r\n')
        sim.set_fault("urc_mid_response", n=1)
        assert u.cmd("AT+QIRD=0,1500") == b'\r\n+QIRD: 2\r\nab\r\n\r\n+QIND: "csq",21,99\r\n\r\nOK\r\n'
        assert u.cmd("AT+CSQ") == b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n"  # only the next one
        sim.set_fault("garbage", n=50)
        junk = u.quiet(0.2)
        assert len(junk) == 52 and sim.stats["garbage_bytes"] == 50
        sim.set_fault("hang", seconds=0.5)
        with pytest.raises(TimeoutError):
            u.cmd("AT", timeout=0.3)
        time.sleep(0.4)
        assert u.cmd("AT") == b"\r\nOK\r\n"  # hang over by itself
        assert sim.stats["dropped"] == 1
        sim.set_fault("hang")
        with pytest.raises(TimeoutError):
            u.cmd("AT", timeout=0.3)
        sim.set_fault("hang", on=False)
        assert u.cmd("AT") == b"\r\nOK\r\n"
        u.close()
    finally:
        echo.close()


def test_pdpdeact_stack_degraded_and_reboot(sim):
    echo = Echo()
    try:
        u = booted(sim)
        pdp_up(u)
        sim.set_fault("pdpdeact")
        u.wait(b'+QIURC: "pdpdeact",1\r\n')
        assert u.cmd("AT+QIACT?") == b"\r\nOK\r\n"
        assert u.cmd("AT+QIACT=1") == b"\r\n+CME ERROR: 572\r\n"  # deactivate first
        u.cmd("AT+QIDEACT=1")
        pdp_up(u)
        sim.set_fault("stack_degraded")
        u.cmd('AT+QIOPEN=1,2,"TCP","127.0.0.1",%d,0,0' % echo.port)
        u.wait(b"+QIOPEN: 2,554\r\n")  # the module cannot create the socket
        u.cmd("AT+QICLOSE=2")
        u.cmd("AT+QIDEACT=1")
        pdp_up(u)
        u.cmd('AT+QIOPEN=1,2,"TCP","127.0.0.1",%d,0,0' % echo.port)
        u.wait(b"+QIOPEN: 2,554\r\n")  # PDP reactivation does not help
        u.cmd("AT+QICLOSE=2")
        u.cmd("AT+CFUN=0")
        u.cmd("AT+CFUN=1")
        deadline = time.monotonic() + 3
        while b"+CEREG: 0,1" not in u.cmd("AT+CEREG?"):
            assert time.monotonic() < deadline
        pdp_up(u)
        u.cmd('AT+QIOPEN=1,2,"TCP","127.0.0.1",%d,0,0' % echo.port)
        u.wait(b"+QIOPEN: 2,0\r\n")  # the radio restart revived the stack
        sim.set_fault("reboot")
        boot = u.wait(b"+QIND: SMS DONE\r\n")
        assert b"\r\nRDY\r\n" in boot and b"closed" not in boot  # sockets dropped silently
        assert u.cmd("AT") == b"AT\r\r\nOK\r\n"  # echo is back on
        assert sim.state()["pdp"] == "inactive" and sim.state()["sockets"] == {}
        assert sim.stats["reboots"] == 2
        u.close()
    finally:
        echo.close()


def test_pins_and_newest_client_wins(sim):
    u = booted(sim)
    u2 = Uart(sim.port)  # the newest client is the UART; the module stays up (no new boot)
    assert u2.cmd("AT") == b"\r\nOK\r\n"  # ATE0 from before still holds
    with pytest.raises((ConnectionError, TimeoutError, OSError)):
        u.cmd("AT", timeout=0.3)
    sim.pin("reset", True)
    with pytest.raises(TimeoutError):
        u2.cmd("AT", timeout=0.2)
    sim.pin("reset", False)
    u2.wait(b"RDY\r\n")
    assert u2.cmd("AT") == b"AT\r\r\nOK\r\n"
    sim.pin("pwrkey", True)
    sim.pin("pwrkey", False)
    u2.wait(b"POWERED DOWN\r\n")
    assert not sim.state()["powered"]
    sim.pin("pwrkey", True)
    sim.pin("pwrkey", False)
    u2.wait(b"RDY\r\n")
    u.close()
    u2.close()


def test_gnss_commands_and_phases(sim):
    u = booted(sim)
    assert u.cmd('AT+QGPSGNMEA="RMC"') == b"\r\n+CME ERROR: 505\r\n"  # receiver off
    assert u.cmd('AT+QGPSCFG="gnssconfig",7') == b"\r\nOK\r\n"
    assert u.cmd('AT+QGPSCFG="gnssconfig"') == b'\r\n+QGPSCFG: "gnssconfig",7\r\n\r\nOK\r\n'
    assert u.cmd("AT+QGPS=1") == b"\r\nOK\r\n"
    assert u.cmd("AT+QGPS=1") == b"\r\n+CME ERROR: 504\r\n"
    assert u.cmd('AT+QGPSGNMEA="GGA"') == b"\r\n+QGPSGNMEA: $GNGGA,,,,,,0,00,99.99,,,,,,*56\r\n\r\nOK\r\n"
    assert u.cmd("AT+QGPSLOC=2") == b"\r\n+CME ERROR: 516\r\n"
    time.sleep(0.35)
    fake = u.cmd('AT+QGPSGNMEA="GGA"').decode()
    g = pynmea2.parse(fake.split("+QGPSGNMEA: ")[1].split("\r")[0])
    assert g.gps_qual == 1 and int(g.num_sats) == 0 and float(g.horizontal_dil) == 0.0  # the fake early fix
    time.sleep(0.35)
    lines = u.cmd('AT+QGPSGNMEA="RMC"') + u.cmd('AT+QGPSGNMEA="GGA"') + u.cmd('AT+QGPSGNMEA="GSV"')
    nmea = re.findall(rb"\+QGPSGNMEA: (\$[^\r]*)", lines)
    assert len(nmea) >= 4
    rmc = pynmea2.parse(nmea[0].decode())
    assert rmc.status == "A" and rmc.data[-1] == "V"  # NMEA 4.1 navigational status
    loc = re.search(rb"\+QGPSLOC: ([^\r]*)", u.cmd("AT+QGPSLOC=2")).group(1).decode().split(",")
    assert len(loc) == 11 and abs(float(loc[1]) - 40.8425) < 0.001 and 6 <= int(loc[10]) <= 14
    sim.set_fault("antenna")
    assert b",0,00,99.99," in u.cmd('AT+QGPSGNMEA="GGA"') and b"516" in u.cmd("AT+QGPSLOC=2")
    sim.set_fault("antenna", on=False)
    assert u.cmd("AT+QGPSEND") == b"\r\nOK\r\n" and u.cmd("AT+QGPSEND") == b"\r\n+CME ERROR: 505\r\n"
    u.close()


def test_nmeasrc_required_like_ec2x():
    s = ModemSim(delay_scale=SCALE, nmeasrc_required=True, cold_start_s=0)
    s.start()
    try:
        u = booted(s)
        u.cmd("AT+QGPS=1")
        assert u.cmd('AT+QGPSGNMEA="RMC"') == b"\r\n+CME ERROR: 507\r\n"
        u.cmd('AT+QGPSCFG="nmeasrc",1')
        assert b"$G" in u.cmd('AT+QGPSGNMEA="RMC"')
        u.close()
    finally:
        s.stop()


def test_gnss_scenario_noise_and_ranges():
    g = GnssScenario((40.8425, 111.749, 1065.0), noise_m=3.0, cold_start_s=10, fake_fix_s=2, seed=4)
    assert g.phase(5) == "none" and g.phase(11) == "fake" and g.phase(13) == "fix" and g.phase(13, True) == "none"
    t0 = datetime.datetime(2026, 9, 11, 6, 0, 0, tzinfo=datetime.timezone.utc)
    north, east, sats, hdops = [], [], set(), []
    for k in range(400):
        f = g.fix(20, t0 + datetime.timedelta(seconds=k))
        north.append((f["lat"] - 40.8425) * 111320.0)
        east.append((f["lon"] - 111.749) * 111320.0 * math.cos(math.radians(40.8425)))
        sats.add(f["nsat"])
        hdops.append(f["hdop"])
    assert abs(statistics.mean(north)) < 0.6 and 2.5 < statistics.stdev(north) < 3.5
    assert abs(statistics.mean(east)) < 0.6 and 2.5 < statistics.stdev(east) < 3.5
    assert min(sats) >= 6 and max(sats) <= 14 and 0.6 <= min(hdops) and max(hdops) <= 1.8
    # RMC and GGA of one second agree; the talker alternates per query
    now = t0 + datetime.timedelta(seconds=3)
    r1, g1 = g.nmea("RMC", 20, now)[0], g.nmea("GGA", 20, now)[0]
    r2 = g.nmea("RMC", 20, now)[0]
    assert r1[1:3] == "GN" and r2[1:3] == "GB"
    a, b = pynmea2.parse(r1), pynmea2.parse(g1)
    assert (a.latitude, a.longitude) == (b.latitude, b.longitude) and a.datestamp == datetime.date(2026, 9, 11)
    for s in (r1, g1, r2):
        body, _, cs = s[1:].partition("*")
        assert checksum(body) == cs


def test_nmea_coordinates_in_every_hemisphere():
    assert ddmm(40.8425, True) == ("4050.55000", "N") and ddmm(-33.5, True) == ("3330.00000", "S")
    assert ddmm(111.749, False) == ("11144.94000", "E") and ddmm(-0.25, False) == ("00015.00000", "W")
    assert ddmm(10.9999999999, True) == ("1100.00000", "N")
    g = GnssScenario((-33.9, -70.6, 500.0), noise_m=0.0, cold_start_s=0, fake_fix_s=0, seed=1)
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    gga = pynmea2.parse(g.nmea("GGA", 1, now)[0], check=True)
    assert abs(gga.latitude + 33.9) < 1e-6 and abs(gga.longitude + 70.6) < 1e-6
    assert g.qgpsloc(1, now).startswith("+QGPSLOC: 030405.000,-33.90000,-70.60000,")


def test_cli_and_control_port(tmp_path):
    p = Proc([sys.executable, "-m", "tools.sim.modem", "--port", 0, "--control-port", 0, "--fast", "--imei",
              "861111111111111"], "modemsim", log_dir=tmp_path)
    try:
        p.wait_output("READY port=", timeout=15)
        out = p.output()
        port = int(re.search(r"READY port=(\d+)", out).group(1))
        cport = int(re.search(r"CONTROL port=(\d+)", out).group(1))
        u = Uart(port)
        u.wait(b"RDY\r\n")
        assert b"861111111111111" in u.cmd("AT+CGSN")
        with socket.create_connection((LOOPBACK, cport), timeout=5) as c:
            f = c.makefile("rwb")

            def ask(req):
                f.write(json.dumps(req).encode() + b"\n")
                f.flush()
                return json.loads(f.readline())

            assert ask({"fault": "garbage", "on": True, "n": 10}) == {"ok": True}
            assert ask({"get": "stats"})["stats"]["garbage_bytes"] == 10
            assert ask({"get": "seen"})["seen"]["+CGSN"] == 1
            assert ask({"get": "state"})["state"]["echo"] is True
            assert ask({"fault": "nope"})["ok"] is False
        u.close()
    finally:
        p.stop()


def test_a_restart_forgets_volatile_settings_and_a_private_apn_sim_refuses_other_apns():
    s = ModemSim(delay_scale=SCALE, cold_start_s=0.3, fake_fix_s=0.3, seed=2, apn_required="private.apn",
                 nmeasrc_required=True)
    s.start()
    try:
        u = booted(s)
        u.cmd('AT+QICSGP=1,1,"cmnet","","",0')
        assert u.cmd("AT+QIACT=1").endswith(b"\r\nERROR\r\n")  # the SIM's network wants its own APN
        u.cmd('AT+QICSGP=1,1,"private.apn","u","p",1')
        u.cmd('AT+QGPSCFG="nmeasrc",1')
        u.cmd("ATE0")
        assert u.cmd("AT+QIACT=1").endswith(b"\r\nOK\r\n")
        assert s.stats["qiact_refused"] == 1
        s.set_fault("reboot")
        u.wait(b"+QIND: SMS DONE\r\n")
        assert u.cmd("AT").startswith(b"AT\r")  # echo back on
        u.cmd("ATE0")
        assert u.cmd("AT+QICSGP=1") == b'\r\n+QICSGP: 1,"","","",0\r\n\r\nOK\r\n'  # the context settings are gone
        assert u.cmd('AT+QGPSCFG="nmeasrc"') == b'\r\n+QGPSCFG: "nmeasrc",0\r\n\r\nOK\r\n'
        assert u.cmd("AT+CMEE?") == b"\r\n+CMEE: 0\r\n\r\nOK\r\n"
        deadline = time.monotonic() + 3
        while b"+CEREG: 0,1" not in u.cmd("AT+CEREG?"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert u.cmd("AT+QIACT=1").endswith(b"\r\nERROR\r\n")  # activation without the APN: refused
        assert s.stats["qiact_refused"] == 2
        log = [line for _, line in s.log]
        assert log.count("<RDY>") == 2 and "AT+QIACT=1" in log
        u.close()
    finally:
        s.stop()


@pytest.mark.parametrize("silent", [False, True])
def test_an_open_whose_context_is_deactivated_meanwhile(silent):
    s = ModemSim(delay_scale=0.5, cold_start_s=0.3, fake_fix_s=0.3, seed=2, silent_open_on_deact=silent)
    s.start()
    echo = Echo()
    try:
        u = booted(s)
        pdp_up(u)
        u.cmd('AT+QIOPEN=1,0,"TCP","127.0.0.1",%d,0,0' % echo.port)  # the result takes 0.1 s here
        s.set_fault("pdpdeact")  # the network takes the context away while the socket is opening
        late = u.quiet(0.5)
        if silent:
            assert b"+QIOPEN" not in late  # the module never reports that socket
        else:
            assert b"+QIOPEN: 0,570\r\n" in late
        u.close()
    finally:
        echo.close()
        s.stop()


def test_help_describes_every_option_with_its_default():
    import contextlib
    import io

    from tools.sim import modem

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        modem.main(["--help"])
    text = out.getvalue()
    opts = re.findall(r"^  (--[a-z-]+)", text, re.M)
    assert {"--apn", "--silent-open-on-deact", "--nmeasrc-required", "--port", "--control-port"} <= set(opts)
    blocks = re.split(r"\n  (?=--)", text.split("options:")[1])[1:]
    assert len(blocks) == len(opts)
    for b in blocks:
        assert "(default:" in b, b


def _utc(text, fmt):
    return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc).timestamp()


def test_network_and_gnss_time_run_at_the_time_scale(tmp_path):
    # --time-scale 1440: a day a minute, for QLTS, CCLK and the NMEA fix alike; advance_s jumps ahead
    p = Proc([sys.executable, "-m", "tools.sim.modem", "--port", 0, "--control-port", 0, "--fast",
              "--cold-start-s", 0, "--fake-fix-s", 0, "--time-scale", 1440], "modemsim", log_dir=tmp_path)
    try:
        p.wait_output("CONTROL port=", timeout=15)
        out = p.output()
        u = Uart(int(re.search(r"READY port=(\d+)", out).group(1)))
        u.wait(b"RDY\r\n")
        u.cmd("ATE0")
        assert u.cmd("AT+QGPS=1").endswith(b"OK\r\n")
        with socket.create_connection((LOOPBACK, int(re.search(r"CONTROL port=(\d+)", out).group(1))),
                                      timeout=5) as c:
            f = c.makefile("rwb")

            def ask(req):
                f.write(json.dumps(req).encode() + b"\n")
                f.flush()
                return json.loads(f.readline())

            def clocks():
                sim = ask({"get": "time"})
                net = _utc(re.search(rb'\+QLTS: "([^+]+)\+32', u.cmd("AT+QLTS=1")).group(1).decode(),
                           "%Y/%m/%d,%H:%M:%S")
                cclk = re.search(rb'\+CCLK: "([^+-]+)[+-]', u.cmd("AT+CCLK?")).group(1).decode()
                rmc = re.search(rb"RMC,(\d{6})\.00,A,[^,]*,[NS],[^,]*,[EW],[^,]*,[^,]*,(\d{6})",
                                u.cmd('AT+QGPSGNMEA="RMC"')).groups()
                gnss = _utc(rmc[1].decode() + rmc[0].decode(), "%d%m%y%H%M%S")
                return sim, net, _utc(cclk, "%y/%m/%d,%H:%M:%S") - 8 * 3600, gnss

            t0 = time.time()
            sim, net, cclk, gnss = clocks()
            assert sim["time_scale"] == 1440
            for t in (net, cclk, gnss):  # one simulated time; a host second is 1440 s of it
                assert abs(t - sim["time"]) < 1440, (t, sim)
            time.sleep(1.0)
            later = clocks()
            run = later[0]["time"] - sim["time"]
            assert 1440 * 0.9 < run < 1440 * (time.time() - t0 + 0.1)
            assert all(b - a > 1000 for a, b in zip((net, cclk, gnss), later[1:]))
            assert ask({"advance_s": 86400}) == {"ok": True} and ask({"time_scale": 1}) == {"ok": True}
            sim, net, cclk, gnss = clocks()
            assert sim["time_scale"] == 1 and sim["time"] - later[0]["time"] >= 86400
            for t in (net, cclk, gnss):
                assert abs(t - sim["time"]) < 5, (t, sim)
        u.close()
    finally:
        p.stop()
