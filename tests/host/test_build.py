"""The .mpy build: compiles what MicroPython accepts, refuses what only CPython accepts, deps not in git."""

import subprocess

import pytest

from harness import ROOT
from tools import build_mpy


def _build(tmp_path, monkeypatch, source):
    src = tmp_path / "src"
    src.mkdir()
    (src / "scratch.py").write_text(source)
    monkeypatch.setattr(build_mpy, "TREES", [(src, "lib")])
    monkeypatch.setattr(build_mpy, "OUT", tmp_path / "out")
    build_mpy.main()
    return tmp_path / "out" / "lib" / "scratch.mpy"


def test_micropython_syntax_compiles(tmp_path, monkeypatch, capsys):
    out = _build(tmp_path, monkeypatch, "async def f(x):\n    async with x:\n        return await x\n")
    assert out.exists() and out.stat().st_size > 0
    assert "bytes of bytecode" in capsys.readouterr().out


def test_cpython_only_syntax_fails_the_build(tmp_path, monkeypatch):
    source = "def f(x):\n    match x:\n        case 1:\n            return 2\n"
    with pytest.raises(SystemExit) as e:
        _build(tmp_path, monkeypatch, source)
    assert "scratch.py" in str(e.value)


def test_fetched_packages_are_not_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert not [p for p in tracked if p.endswith(("umqtt/simple.py", "logging/__init__.py"))]
    assert (ROOT / "build" / "lib" / "umqtt" / "simple.py").exists(), "make deps did not fetch umqtt.simple"
