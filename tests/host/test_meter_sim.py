"""tools/sim/meter: the simulated bus seen from a plain TCP client (CPython), its model, faults, CLI and control."""

import json
import socket
import sys
import time

import pytest

import dlt645
from harness import ROOT, Proc, free_port
from tools.sim.meter import MeterBus, MeterSpec

A = "000072007201"
B = "000072007202"


class Client:
    """A bare bus master over TCP: sends one request, collects bytes until a frame decodes or time runs out."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=2)
        self.chunks = 0

    def ask(self, frame, timeout=1.0, preamble=4):
        self.s.sendall(b"\xfe" * preamble + frame)
        return self.collect(timeout)

    def collect(self, timeout):
        buf = b""
        self.chunks = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.s.recv(512)
            except socket.timeout:
                break
            if not chunk:
                return "closed", buf
            self.chunks += 1
            buf += chunk
            try:
                return dlt645.decode(buf), buf
            except dlt645.DLT645Error:
                continue
        return None, buf

    def read(self, address, di, **kw):
        f, _ = self.ask(dlt645.read_request(address, di), **kw)
        assert f is not None and f != "closed"
        f.check()
        got, raw = dlt645.split_reply(f)
        assert got == di
        return dlt645.value(di, raw)

    def close(self):
        self.s.close()


@pytest.fixture
def bus():
    made = []

    def make(*specs, **kw):
        kw.setdefault("baud", 9600)
        kw.setdefault("latency_ms", (0, 0))
        b = MeterBus(list(specs) or [A], seed=3, **kw)
        b.start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def test_registers_are_consistent():
    bus = MeterBus([MeterSpec(A, start_kwh=1234.56, reverse_kwh=1.5)], seed=5)
    regs = bus.meter(A).registers()
    assert abs(regs[0x00010000] - 1234.56) < 0.05
    assert abs(sum(regs[0x00010100 + 0x100 * k] for k in range(4)) - regs[0x00010000]) < 1e-6
    assert regs[0x0001FF00][0] == regs[0x00010000]
    assert abs(regs[0x00000000] - (regs[0x00010000] - 1.5)) < 1e-6
    ptot = 0
    for k in range(3):
        v, i, p = (regs[base + 0x100 * k] for base in (0x02010100, 0x02020100, 0x02030100))
        assert 200 < v < 260
        assert abs(v * i * regs[0x02060000] / 1000 - p) < 0.0003  # P = V * I * PF per phase
        ptot += p
    assert abs(ptot - regs[0x02030000]) < 1e-6
    assert 49.8 < regs[0x02800002] < 50.2
    assert regs[0x9010] == regs[0x00010000] and regs[0xC032] == A
    for di, v in regs.items():
        assert dlt645.value(di, dlt645.encode_value(di, v)) == v  # every value fits its format


def test_energy_grows_with_speedup_into_the_tariff_of_the_hour():
    bus = MeterBus([MeterSpec(A, start_kwh=100.0, base_kw=2.0, swing_kw=0.0, noise_kw=0.0)], seed=1,
                   speedup=3600.0)
    m = bus.meter(A)
    before = m.registers()
    time.sleep(0.3)  # 0.3 h of meter energy at 2 kW
    after = m.registers()
    grown = after[0x00010000] - before[0x00010000]
    assert 0.55 < grown < 1.5
    moved = [after[0x00010100 + 0x100 * k] - before[0x00010100 + 0x100 * k] for k in range(4)]
    assert sum(1 for x in moved if x > 0) in (1, 2)  # the current tariff (two if the hour turned)
    assert after[0x00020000] == before[0x00020000]


def test_export_runs_reverse_energy_and_negative_power():
    noon = MeterSpec(A, base_kw=0.5, swing_kw=0.0, noise_kw=0.0, export_kw=5.0, start_kwh=10.0)
    bus = MeterBus([noon], seed=1, speedup=3600.0)
    m = bus.meter(A)
    y, mo, d = time.gmtime(m.clock())[:3]
    m.set_clock((y, mo, d, 12, 0, 0))
    m.registers()
    time.sleep(0.2)
    regs = m.registers()
    assert regs[0x00020000] > 0.1 and regs[0x00000000] < regs[0x00010000]
    assert regs[0x02030000] < 0 and regs[0x02020100] < 0


def test_reads_over_tcp_and_what_was_served(bus):
    b = bus(MeterSpec(A, start_kwh=500.0))
    c = Client(b.port)
    try:
        fwd = c.read(A, 0x00010000)
        volts = c.read("AAAAAAAAAAAA", 0x02010100)
        f, _ = c.ask(dlt645.read_address_request())
        assert f.control == 0x93 and dlt645.decode_address(f.data) == A and f.address == A
    finally:
        c.close()
    assert 500 <= fwd < 500.1 and 200 < volts < 260
    assert [(s["address"], s["di"], s["value"]) for s in b.served] == [(A, "00010000", fwd), (A, "02010100", volts)]
    assert b.stats["requests"] == 3 and b.stats["replies"] == 3


def test_reply_takes_at_least_its_wire_time(bus):
    b = bus(baud=2400)
    c = Client(b.port)
    try:
        t0 = time.monotonic()
        f, raw = c.ask(dlt645.read_request(A, 0x00010000))
        took = time.monotonic() - t0
    finally:
        c.close()
    assert f.end == len(raw)
    # 20 request bytes (with preamble) then the reply, 11 bits each at 2400 baud: a floor, not a benchmark
    assert took >= (20 + len(raw)) * 11 / 2400 - 0.002


def test_addressing_wildcards_and_broadcast(bus):
    # meters that take any broadcast time (real ones refuse a jump of years: tests/host/test_meter_history.py)
    b = bus(MeterSpec(A, strict_sync=False), MeterSpec(B, strict_sync=False))
    c = Client(b.port)
    try:
        assert c.ask(dlt645.read_request("AAAAAAAAAAAA", 0x00010000), timeout=0.3)[0] is None
        assert c.read("AAAAAA007202", 0x04000401) == B
        assert c.read(A, 0x04000401) == A
        assert c.ask(dlt645.read_request("000072007299", 0x00010000), timeout=0.3)[0] is None
        assert c.ask(dlt645.read_address_request(), timeout=0.3)[0] is None
        assert c.ask(dlt645.time_sync_request((2031, 12, 24, 23, 59, 30)), timeout=0.3) == (None, b"")
    finally:
        c.close()
    assert b.stats["collisions"] == 2 and b.stats["ignored"] == 1 and b.stats["broadcasts"] == 1
    for addr in (A, B):
        y, mo, d, hh, mm, ss = b.meter(addr).clock_tuple()
        assert (y, mo, d, hh, mm) == (2031, 12, 24, 23, 59) and ss >= 30


def test_unknown_di_answers_no_such_data(bus):
    b = bus()
    c = Client(b.port)
    try:
        f, _ = c.ask(dlt645.read_request(A, 0x02800003))
        g, _ = c.ask(dlt645.read_1997_request(A, 0x00010000 & 0xFFFF))
    finally:
        c.close()
    assert f.control == 0xD1 and f.error.reasons == ["no such data"]
    assert g.control == 0xC1 and g.err == 0x02


def test_followup_frames_by_threshold(bus):
    b = bus(MeterSpec(A, max_frame_data=9))
    c = Client(b.port)
    try:
        f, _ = c.ask(dlt645.read_request(A, 0x0001FF00))
        assert f.control == 0xB1 and f.followup
        raw = f.data[4:]
        seq = 1
        while f.followup:
            f, _ = c.ask(dlt645.read_next_request(A, 0x0001FF00, seq))
            assert f.function == 0x12 and f.data[-1] == seq
            raw += f.data[4:-1]
            seq += 1
        assert f.control == 0x92 and seq == 5
        # asking for the same SEQ again (a retry) gets the same part
        again, _ = c.ask(dlt645.read_next_request(A, 0x0001FF00, 2))
        assert again.data[4:-1] == raw[8:12]
    finally:
        c.close()
    assert dlt645.value(0x0001FF00, raw) == b.served[-1]["value"]


def test_faults(bus):
    b = bus(MeterSpec(A), MeterSpec(B))
    c = Client(b.port)
    req = dlt645.read_request(A, 0x00010000)
    try:
        b.set_fault("silence", address=A)
        assert c.ask(req, timeout=0.3) == (None, b"")
        assert c.read(B, 0x04000401) == B  # only A is silent
        b.set_fault("silence", on=False, address=A)
        b.set_fault("bad_cs", times=1)
        f, raw = c.ask(req, timeout=0.3)
        assert f is None
        with pytest.raises(dlt645.Corrupt):
            dlt645.decode(raw)
        assert c.read(A, 0x00010000) > 0  # once only
        b.set_fault("abnormal")
        b.abnormal_err = 0x04
        f, _ = c.ask(req)
        assert f.control == 0xD1 and f.error.reasons == ["password/unauthorised"]
        b.set_fault("abnormal", on=False)
        b.set_fault("noise", address=A)
        f, raw = c.ask(req)
        assert f.data[:4] == b"\x00\x00\x01\x00"
        assert any(x != 0xFE for x in raw[:f.start])  # random bytes ahead of the preamble
        c.collect(0.05)  # and the noise behind the frame
        b.set_fault("noise", on=False, address=A)
        b.set_fault("split")
        f, _ = c.ask(req)
        assert f.data[:4] == b"\x00\x00\x01\x00" and c.chunks >= 2  # several writes (a floor, even when busy)
        b.set_fault("split", on=False)
        b.set_fault("followup")
        f, _ = c.ask(req)
        assert f.control == 0xB1 and len(f.data) == 4 + 2
        b.set_fault("followup", on=False)
        b.set_fault("drop_client")
        assert c.ask(req)[0] == "closed"
    finally:
        c.close()
    c = Client(b.port)
    try:
        assert c.read(A, 0x04000401) == A  # dropped once, then served again
    finally:
        c.close()
    assert b.stats["drops"] == 1 and b.stats["clients"] == 2
    with pytest.raises(ValueError):
        b.set_fault("lightning")


def test_newer_client_replaces_older(bus):
    b = bus()
    old = Client(b.port)
    try:
        assert old.read(A, 0x04000401) == A
        new = Client(b.port)
        try:
            assert old.collect(1.0)[0] == "closed"
            assert new.read(A, 0x04000401) == A
        finally:
            new.close()
    finally:
        old.close()


def _control(port, req):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def test_cli_ready_line_and_control_port(tmp_path):
    port, cport = free_port(), free_port()
    p = Proc([sys.executable, "-m", "tools.sim.meter", "--port", port, "--meter", A, "--meter", B, "--baud", 9600,
              "--latency-ms", "0:2", "--speedup", 60, "--seed", 2, "--control-port", cport], "meter-sim",
             cwd=ROOT, log_dir=tmp_path)
    try:
        p.wait_output("READY port=%d" % port, timeout=20)
        assert "CONTROL port=%d" % cport in p.output()
        assert _control(cport, {"get": "meters"}) == {"meters": [A, B]}
        c = Client(port)
        try:
            assert c.read(B, 0x04000401) == B
            assert _control(cport, {"fault": "silence", "on": True, "address": B}) == {"ok": True}
            assert c.ask(dlt645.read_request(B, 0x04000401), timeout=0.3)[0] is None
            fwd = c.read(A, 0x00010000)
        finally:
            c.close()
        served = _control(cport, {"get": "served"})["served"]
        assert [(s["address"], s["di"]) for s in served] == [(B, "04000401"), (A, "00010000")]
        assert served[1]["value"] == fwd
        regs = _control(cport, {"get": "registers", "address": A})["registers"]
        assert regs["00010000"] >= fwd and regs["04000401"] == A
        assert _control(cport, {"get": "stats"})["stats"]["silenced"] == 1
        assert _control(cport, {"get": "nonsense"})["ok"] is False
        assert _control(cport, {"fault": "nonsense"})["ok"] is False
        assert _control(cport, {"clear": "served"}) == {"ok": True}
        assert _control(cport, {"get": "served"}) == {"served": []}
        assert p.stop(timeout=10) == 0
    finally:
        p.kill()


NO_DATA_REPLY = "68 01 72 00 72 00 00 68 D1 01 35"  # D1, L 1, ERR 02 "no such data" (+0x33), then CS 16


def test_single_phase_meter_refuses_phases_b_and_c_like_a_real_one(bus):
    b = bus(MeterSpec(A, phases=1), MeterSpec(B))
    c = Client(b.port)
    try:
        for di in (0x02010200, 0x02010300, 0x02020200, 0x02020300, 0x02030200, 0x02030300):
            f, raw = c.ask(dlt645.read_request(A, di))
            assert f.control == 0xD1 and f.abnormal and f.err == dlt645.ERR_NO_DATA, "%08X" % di
            assert raw.lstrip(b"\xfe").hex(" ").upper().startswith(NO_DATA_REPLY)
        # phase A and the totals are there; the three-phase meter beside it answers B and C
        assert 200 < c.read(A, 0x02010100) < 260
        for di in (0x02020100, 0x02030000, 0x02030100, 0x02060000, 0x02800002, 0x00010000, 0x0001FF00):
            c.read(A, di)
        assert 200 < c.read(B, 0x02010300) < 260
    finally:
        c.close()
    regs = b.meter(A).registers()
    assert 0x02010200 not in regs and regs[0x02030000] == regs[0x02030100]  # all the power is on phase A


def test_meter_without_block_reads_refuses_the_block_di(bus):
    b = bus(MeterSpec(A, block=False))
    c = Client(b.port)
    try:
        f, _ = c.ask(dlt645.read_request(A, 0x0001FF00))
        assert f.control == 0xD1 and f.err == dlt645.ERR_NO_DATA
        assert c.read(A, 0x00010400) >= 0 and c.read(A, 0x00010000) > 0
    finally:
        c.close()
    assert b.stats["abnormal"] == 1


def test_help_describes_every_option_with_its_default():
    import subprocess

    out = subprocess.run([sys.executable, "-m", "tools.sim.meter", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    options = [w.strip("[,") for w in out.split() if w.startswith(("--", "[--")) and w.strip("[,") != "--help"]
    options = sorted(set(o.split("]")[0] for o in options))
    assert "--single-phase" in options and "--no-block" in options
    help_text = out.split("options:", 1)[1]
    blocks = {}
    current = None
    for line in help_text.splitlines():
        s = line.strip()
        if s.startswith("--"):
            current = s.split()[0]
            blocks[current] = s
        elif current:
            blocks[current] += " " + s
    for o in options:
        assert o in blocks and "(default: " in blocks[o], (o, blocks.get(o))


def test_cli_single_phase_and_no_block_meters(tmp_path):
    port = free_port()
    p = Proc([sys.executable, "-m", "tools.sim.meter", "--port", port, "--meter", A, "--baud", 9600,
              "--latency-ms", "0:2", "--single-phase", "--no-block"], "meter-sim", cwd=ROOT, log_dir=tmp_path)
    try:
        p.wait_output("READY port=%d" % port, timeout=20)
        c = Client(port)
        try:
            for di in (0x02010200, 0x0001FF00):
                f, _ = c.ask(dlt645.read_request(A, di))
                assert f.abnormal and f.err == dlt645.ERR_NO_DATA
            assert c.read(A, 0x02010100) > 0
        finally:
            c.close()
        assert p.stop(timeout=10) == 0
    finally:
        p.kill()
