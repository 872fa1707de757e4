"""The stub type check: the tree passes against the ESP32 and RP2 ports, and a call a port lacks fails it."""

import shutil

import pytest

from harness import ROOT
from tools import typecheck

_WRONG = """import machine
import time


def open_bus():
    u = machine.UART(1, baudrate=9600, bogus=1)
    return u, time.ticks_msx()
"""


def _stubs_or_fail(port):
    if not (typecheck.TYPINGS / port / ".pins").exists():
        pytest.fail("no %s stubs: run `make typings` (make test does)" % port)


@pytest.mark.parametrize("port", sorted(typecheck.ports()))
def test_tree_passes_against_the_port_stubs(port):
    _stubs_or_fail(port)
    code, out = typecheck.check(port)
    assert code == 0, out


@pytest.mark.parametrize("port", sorted(typecheck.ports()))
def test_a_call_the_port_lacks_fails_with_file_and_line(port, tmp_path):
    _stubs_or_fail(port)
    for sub in ("firmware", "lib"):
        shutil.copytree(ROOT / sub, tmp_path / sub)
    (tmp_path / "firmware" / "wrong_call.py").write_text(_WRONG)
    code, out = typecheck.check(port, tmp_path)
    assert code == 1, out
    assert 'firmware/wrong_call.py:6: error: Unexpected keyword argument "bogus"' in out
    assert 'firmware/wrong_call.py:7: error: Module has no attribute "ticks_msx"' in out
    assert "firmware/app.py" not in out  # only the wrong file is named


def test_every_port_pins_its_stubs_exactly():
    pins = typecheck.ports()
    assert set(pins) == {"esp32", "rp2"}
    for port, reqs in pins.items():
        assert any(r.startswith("micropython-%s-stubs==" % port) for r in reqs)
        assert all("==" in r for r in reqs)
