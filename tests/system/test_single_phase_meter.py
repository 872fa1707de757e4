"""A single-phase meter that also refuses block reads, polled by the real firmware (.mpy, unix port) every second.

Its refusals are learned on first contact: `meter_abnormal` stays flat afterwards (so heartbeats stay
short), `inst` carries phase A only with the meter's own decimals, and after a power cut the
capabilities come back from flash: not one refusal is asked for again.
"""

import pytest

from tools.rig import TerminalRig

pytestmark = pytest.mark.system

ADDR = "000072007201"
INST_PLACES = {"v": 1, "i": 3, "p": 4, "pf": 3, "f": 2}


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = TerminalRig(tmp_path_factory.mktemp("single-phase"), address=ADDR, start=False,
                    cfg={"poll_s": 1, "heartbeat_s": 1, "inst": ["v", "i", "p", "pf", "f"]})
    spec = r.bus.meter(ADDR).spec
    spec.phases, spec.block = 1, False  # as --single-phase --no-block
    r.start_firmware()
    yield r
    r.close()


def _places(x):
    text = repr(x)
    return len(text.split(".")[1]) if "." in text else 0


def test_learned_once_then_flat_counters_and_short_heartbeats(rig):
    rig.wait("30 readings", lambda: len(rig.of("energy")) >= 30, 120)
    energy = rig.of("energy")
    refusals = rig.bus.stats["abnormal"]
    assert refusals == 3, refusals  # block, V and I of phase B: once each, on first contact
    for e in energy:
        inst = e["inst"]
        assert len(inst["v"]) == 1 and len(inst["i"]) == 1 and set(inst) == set(INST_PLACES), inst
        for key, places in INST_PLACES.items():
            for x in inst[key] if isinstance(inst[key], list) else [inst[key]]:
                assert _places(x) <= places, (key, x)  # the meter's digits, no float noise
    beats = rig.of("heartbeat")
    abnormal = [b["err"]["meter_abnormal"] for b in beats if "err" in b and "meter_abnormal" in b["err"]]
    assert abnormal and set(abnormal) == {3}, abnormal
    later = beats[len(beats) // 2:]
    full = [b for b in later if "err" in b]
    assert len(later) >= 10 and len(full) <= len(later) // 4 + 1, (len(full), len(later))


def test_capabilities_survive_a_power_cut(rig):
    refusals = rig.bus.stats["abnormal"]
    rig.power_cut()
    since = rig.msgs[-1][0]
    rig.start_firmware()
    rig.wait("readings after the restart", lambda: len(rig.of("energy", since)) >= 10, 120)
    assert rig.bus.stats["abnormal"] == refusals  # nothing refused asked again
    full = [b for b in rig.of("heartbeat", since) if "err" in b]
    assert full and not [b for b in full if "meter_abnormal" in b["err"]], full
