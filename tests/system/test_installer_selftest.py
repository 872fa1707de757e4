"""Installer self-test under the unix port with the simulators: all green, and each fault named as the failing line.

The firmware runs from build/mpy (`firmware.selftest.main`), against the meter and modem simulators and a real
mosquitto; the step limits are shortened so the failing waits are brief (the defaults total two minutes).
"""

import json

import pytest

from harness import ROOT, free_port, run_micropython
from tools import rig as rigmod
from tools.rig import TerminalRig
from tools.sim.modem import ModemSim

pytestmark = pytest.mark.system

_LIMITS = {"total": 60, "at": 5, "sim": 3, "reg": 4, "gnss": 8, "broker": 10, "event": 5, "led_reps": 1}

_RUNNER = """
import json, sys
sys.path[:0] = [sys.argv[3], sys.argv[3] + "/lib"]  # build/mpy: the board's flash
from firmware import selftest
r = selftest.main(sys.argv[1], json.loads(sys.argv[2]))
print("RESULT " + json.dumps(r))
"""


class NoSimModem(ModemSim):
    """A module with an empty SIM holder: +CME ERROR: 10 for the SIM, never registered."""

    async def _at_cpin(self, kind, args):
        self._respond(final=self._err(10))

    async def _at_qccid(self, kind, args):
        self._respond(final=self._err(10))

    def _reg_stat(self):
        return 0


class NoNetworkModem(ModemSim):
    """SIM fine, but no cell to register with: searching forever."""

    def _reg_stat(self):
        return 2 if self.cfun == 1 else 0


def _selftest(rig, tmp_path):
    script = tmp_path / "selftest_run.py"
    script.write_text(_RUNNER)
    rc, out = run_micropython(script, rig.cfg_path, json.dumps(_LIMITS), ROOT / "build" / "mpy", cwd=tmp_path,
                              timeout=120)
    assert rc == 0, out[-4000:]
    result = json.loads(out.rsplit("RESULT ", 1)[1].splitlines()[0])
    return result, out


def _rig(tmp_path, monkeypatch, modem_cls=ModemSim, cfg=None):
    monkeypatch.setattr(rigmod, "ModemSim", modem_cls)
    return TerminalRig(tmp_path / "rig", start=False, cfg=cfg, speedup=1.0)


def _verdicts(result):
    return {name: verdict for name, verdict, _ in result["lines"]}


def test_all_green_with_the_simulators_up(tmp_path, monkeypatch):
    rig = _rig(tmp_path, monkeypatch)
    try:
        result, out = _selftest(rig, tmp_path)
        print(out)
        v = _verdicts(result)
        assert result["ok"] and result["fail"] == [], out
        assert set(v) == {"flash", "meter " + rig.address, "modem", "SIM", "registration", "signal", "GNSS",
                          "clock", "broker"}
        assert all(x == "ok" for x in v.values()), v
        assert result["s"] <= 120 and result["led"] == "steady on: all ok" and result["event_sent"]
        assert "verdict: PASS" in out
        ev = rig.wait("selftest event", lambda: [e for e in rig.of("event") if e.get("kind") == "selftest"], 20)
        assert ev[0]["data"]["ok"] is True and ev[0]["data"]["lines"] == result["lines"]
        assert "inc" in ev[0] or "seq" in ev[0]  # an outbox record like every event
    finally:
        rig.close()


@pytest.mark.parametrize("fault,line", [
    ("meter_silent", "meter 000000000099"),
    ("no_sim", "SIM"),
    ("no_registration", "registration"),
    ("broker_unreachable", "broker"),
    ("no_gnss", "GNSS"),
])
def test_each_fault_is_named_as_the_failing_line(tmp_path, monkeypatch, fault, line):
    modem_cls = {"no_sim": NoSimModem, "no_registration": NoNetworkModem}.get(fault, ModemSim)
    cfg = {"meter_silent": {"meters": ["000000000099"]},
           "broker_unreachable": {"broker_port": free_port()}}.get(fault)
    rig = _rig(tmp_path, monkeypatch, modem_cls, cfg)
    try:
        if fault == "no_gnss":
            rig.modem.set_fault("antenna")
        result, out = _selftest(rig, tmp_path)
        print(out)
        assert result["fail"] == [line], out
        assert not result["ok"]
        index = [n for n, _, _ in result["lines"]].index(line) + 1
        assert result["led"] == "%d short blinks, repeated: line %d (%s) failed" % (index, index, line)
        assert "verdict: FAIL: " + line in out
        detail = {n: d for n, _, d in result["lines"]}[line]
        assert {"no_sim": "no SIM inserted", "no_registration": "searching", "no_gnss": "no satellites",
                "broker_unreachable": "unreachable", "meter_silent": "no answer"}[fault] in detail, detail
        if fault in ("no_sim", "no_registration"):
            assert _verdicts(result)["broker"] == "skip"  # not a second failure: it could not be checked
        if fault == "broker_unreachable":
            assert not result["event_sent"]  # queued in the outbox for the next connection
        else:
            ev = rig.wait("selftest event", lambda: [e for e in rig.of("event") if e.get("kind") == "selftest"],
                          20) if result["event_sent"] else None
            assert ev is None or ev[0]["data"]["fail"] == [line]
    finally:
        rig.close()
