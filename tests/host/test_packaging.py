"""manifest.py (freezing) and package.json (mip) list every module, with the firmware's version."""

import ast
import json

from harness import ROOT

from firmware import VERSION

UNIX_ONLY = {"tcpuart"}


def _lib_modules():
    return {p.stem for p in (ROOT / "lib").glob("*.py")} - UNIX_ONLY


def test_manifest_freezes_every_driver_and_the_firmware_package():
    text = (ROOT / "manifest.py").read_text()
    tree = ast.parse(text)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple) and all(isinstance(e, ast.Constant) for e in node.elts):
            names |= {e.value for e in node.elts}
    assert names == _lib_modules()
    assert 'package("firmware")' in text and 'version="%s"' % VERSION in text


def test_package_json_lists_every_module():
    pkg = json.loads((ROOT / "package.json").read_text())
    assert pkg["version"] == VERSION
    dests = {d for d, _ in pkg["urls"]}
    assert {m + ".py" for m in _lib_modules()} <= dests
    assert {"firmware/" + p.name for p in (ROOT / "firmware").glob("*.py")} <= dests
    assert ["umqtt.simple", "latest"] in pkg["deps"] and ["logging", "latest"] in pkg["deps"]
