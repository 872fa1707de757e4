"""firmware/tls.py against a fake module: uploads only what is missing or changed, the clock, refusals."""

import asyncio

import quectel_files
from atengine import ATError
from portable import FixedClock, raises, rmtree, scratch

from firmware.tls import TlsSetup, TlsSetupError

CA = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


class FakeAT:
    """The module's file system and clock behind AT commands, as far as TlsSetup uses them."""

    def __init__(self):
        self.files = {}
        self.sent = []

    async def cmd(self, text, timeout_ms=5000, payload=None, expect=None, expect_timeout_ms=None):
        self.sent.append(text)
        name = text.split('"')[1] if '"' in text else ""
        if text.startswith("AT+QFLST"):
            if name not in self.files:
                raise ATError(405, [], "+CME ERROR")
            return ['+QFLST: "UFS:%s",%d' % (name, len(self.files[name]))]
        if text.startswith("AT+QFDEL"):
            self.files.pop(name)
            return []
        if text.startswith("AT+QFUPL"):
            self.files[name] = bytes(payload)
            return ["+QFUPL: %d,%x" % (len(payload), quectel_files.checksum(payload))]
        return []


class FakeModem:
    def __init__(self):
        self.at = FakeAT()
        self.imei = "861234567890123"
        self.timeouts = {"cmd": 1000}
        self.tls = None
        self._tls_gen = 0
        self.clock = None

    async def _ensure(self):
        pass

    async def set_clock(self, utc):
        self.clock = utc


class Log:
    def __init__(self):
        self.lines = []

    def info(self, msg, *args):
        self.lines.append(msg % args)

    warning = info


def _setup(d, **cfg):
    with open(d + "/ca.pem", "wb") as f:
        f.write(CA)
    conf = {"state_dir": d, "tls_ca": d + "/ca.pem", "tls_cert": "", "tls_key": "", "tls_verify": True,
            "tls_sni": True}
    conf.update(cfg)
    events = []
    log = Log()
    clock = FixedClock(1795430800, "net")  # 2026-11-23 10:46:40 UTC
    return TlsSetup(FakeModem(), conf, clock, log, lambda kind, data: events.append((kind, data))), events, log


def test_uploads_once_then_only_when_changed():
    d = scratch("tls_setup")
    s, events, log = _setup(d)
    asyncio.run(s.prepare())
    m = s.modem
    assert m.at.files == {"ca.pem": CA} and events == [("tls_files", {"uploaded": ["ca.pem"]})]
    assert m.tls["seclevel"] == 1 and m.tls["sni"] == 1 and m.tls["cacert"] == "ca.pem" and m._tls_gen == -1
    assert m.clock == (2026, 11, 23, 10, 46, 40)
    asyncio.run(s.prepare())
    assert len(events) == 1 and len([c for c in m.at.sent if c.startswith("AT+QFUPL")]) == 1  # recorded: not again
    with open(d + "/ca.pem", "wb") as f:
        f.write(CA.replace(b"fake", b"FAKE"))  # same size, other content, and the same XOR-of-words checksum
    asyncio.run(s.prepare())
    assert events[-1] == ("tls_files", {"uploaded": ["ca.pem"]}) and m.at.files["ca.pem"] != CA
    assert any(c.startswith("AT+QFDEL") for c in m.at.sent)
    assert quectel_files.checksum(CA) == quectel_files.checksum(m.at.files["ca.pem"])  # why a digest is kept
    s2, events2, _ = _setup(d)  # another module (IMEI) with a file of the same size: uploaded, nothing assumed
    s2.modem.imei = "869999999999999"
    s2.modem.at.files["ca.pem"] = CA
    asyncio.run(s2.prepare())
    assert events2 == [("tls_files", {"uploaded": ["ca.pem"]})]
    assert "MIIB" not in " ".join(log.lines)
    rmtree(d)


def test_refusals_name_the_problem_not_the_content():
    d = scratch("tls_refuse")
    s, _, _ = _setup(d, tls_cert=d + "/client.pem")
    e = raises(TlsSetupError, s.settings)
    assert "tls_key empty" in str(e)
    s, _, _ = _setup(d, tls_ca=d + "/missing.pem")
    e = raises(TlsSetupError, asyncio.run, s.prepare())
    assert "missing.pem not on the terminal's flash" in str(e)
    s, _, _ = _setup(d)
    s.clock.source = "rtc"
    e = raises(TlsSetupError, asyncio.run, s.prepare())
    assert "no trusted time" in str(e) and s.modem.clock is None
    s, _, _ = _setup(d, tls_verify=False)
    asyncio.run(s.prepare())
    assert s.modem.tls["seclevel"] == 0 and s.modem.at.files == {} and s.modem.clock is None
    rmtree(d)
