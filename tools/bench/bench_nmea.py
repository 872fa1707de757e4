"""Cost of parsing one NMEA sentence: under the MicroPython unix port (time and heap), and under CPython.

The MicroPython figures come from tests/port/mp/nmea_bench.py (one JSON line); the CPython ones are measured
here, with pynmea2 on the same sentences for comparison.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

from tools.mpunix import micropython_path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "port" / "mp" / "nmea_bench.py"
MP_ITERATIONS = 20000
CPY_ITERATIONS = 50000
LINES = {
    "rmc": "$GNRMC,023044.000,A,4050.5500,N,11144.9400,E,0.52,84.30,150624,,,A,V*3A",
    "gga": "$GNGGA,023044.000,4050.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,*6C",
}


def _micropython():
    exe = micropython_path()
    if not exe:
        raise RuntimeError("no `micropython` command; run `make venv`")
    p = subprocess.run([exe, str(SCRIPT), str(MP_ITERATIONS)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    if p.returncode:
        raise RuntimeError("nmea_bench.py failed:\n" + p.stdout + p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def _us_per_call(fn, arg, n):
    for _ in range(100):
        fn(arg)
    t0 = time.perf_counter()
    for _ in range(n):
        fn(arg)
    return (time.perf_counter() - t0) / n * 1e6


def _cpython():
    sys.path.insert(0, str(ROOT / "lib"))
    try:
        import nmea
    finally:
        sys.path.remove(str(ROOT / "lib"))
    figures = {}
    for name, line in LINES.items():
        raw = (line + "\r\n").encode()
        figures["cpython_%s_str_us_per_sentence" % name] = round(_us_per_call(nmea.parse, line, CPY_ITERATIONS), 2)
        figures["cpython_%s_bytes_us_per_sentence" % name] = round(_us_per_call(nmea.parse, raw, CPY_ITERATIONS), 2)
    try:
        import pynmea2
    except ImportError:
        return figures

    def pynmea2_parse(line):
        # pynmea2 converts fields lazily: read the ones ours converts, for a like-for-like figure.
        m = pynmea2.parse(line, check=True)
        return m.latitude, m.longitude, m.timestamp

    for name, line in LINES.items():
        figures["cpython_pynmea2_%s_us_per_sentence" % name] = round(
            _us_per_call(pynmea2_parse, line, CPY_ITERATIONS // 5), 2)
    return figures


def run():
    figures = {}
    figures.update(_micropython())
    figures.update(_cpython())
    return dict(sorted(figures.items()))
