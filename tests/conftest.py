"""pytest wiring: portable unit tests run twice, under CPython and under the MicroPython unix port.

Every `tests/unit/test_*.py` is collected normally by pytest (CPython) and, in
addition, mirrored as one item per `test_*` function that runs under the unix
port (`test_name[micropython]`). The module is run once per session under
MicroPython by tests/unit/mprunner.py; each mirrored item reports its own line.
The terminal summary says how many ran under each runtime.
"""

import ast
import subprocess
from pathlib import Path

import pytest

from harness import MICROPYTHON, ROOT

UNIT_DIR = ROOT / "tests" / "unit"
_mp_results = {}


def _mp_run(path):
    if path not in _mp_results:
        if not MICROPYTHON:
            raise RuntimeError("no `micropython` command: run `make venv`")
        p = subprocess.run([MICROPYTHON, str(UNIT_DIR / "mprunner.py"), path.stem], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        results, current = {}, None
        for line in (p.stdout + p.stderr).splitlines():
            word, _, name = line.partition(" ")
            if word in ("PASS", "FAIL") and name.startswith("test_"):
                current = name
                results[name] = [word, []]
            elif current and results[current][0] == "FAIL":
                results[current][1].append(line)
        _mp_results[path] = (results, p.stdout + p.stderr)
    return _mp_results[path]


class MicroPythonItem(pytest.Item):
    def runtest(self):
        results, output = _mp_run(self.path)
        name = self.name.partition("[")[0]
        if name not in results:
            raise MicroPythonFailure("%s did not run under MicroPython; runner output:\n%s"
                                     % (name, output[-3000:]))
        verdict, trace = results[name]
        if verdict != "PASS":
            raise MicroPythonFailure("\n".join(trace))

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MicroPythonFailure):
            return "under MicroPython:\n" + str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, self.name


class MicroPythonFailure(Exception):
    pass


class MicroPythonModule(pytest.File):
    def collect(self):
        tree = ast.parse(self.path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield MicroPythonItem.from_parent(self, name=node.name + "[micropython]")


def pytest_collect_file(parent, file_path: Path):
    if file_path.parent == UNIT_DIR and file_path.name.startswith("test_") and file_path.suffix == ".py":
        return MicroPythonModule.from_parent(parent, path=file_path)


_KINDS = {
    "host": "host tests (CPython: properties, simulators, tools)",
    "port": "driver tests (unix port against simulators)",
    "system": "system tests (firmware .mpy, simulators, mosquitto)",
}


def pytest_terminal_summary(terminalreporter):
    counts = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for rep in terminalreporter.stats.get(outcome, []):
            if getattr(rep, "when", "call") != "call" and outcome != "error":
                continue
            nodeid = rep.nodeid
            if nodeid.endswith("[micropython]"):
                kind = "unit tests under MicroPython (unix port)"
            elif nodeid.startswith("tests/unit/"):
                kind = "unit tests under CPython"
            else:
                kind = _KINDS.get(nodeid.split("/")[1], "other tests")
            counts.setdefault(kind, {}).setdefault(outcome, 0)
            counts[kind][outcome] += 1
    if counts:
        terminalreporter.section("tests by runtime")
        for kind in sorted(counts):
            terminalreporter.write_line("%-48s %s" % (kind, ", ".join("%d %s" % (n, o) for o, n in
                                                                    sorted(counts[kind].items()))))
