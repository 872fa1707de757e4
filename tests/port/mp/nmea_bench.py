"""Cost of nmea.parse under the MicroPython unix port: prints one JSON line of figures.

    micropython tests/port/mp/nmea_bench.py [iterations]
"""

import gc
import json
import sys
import time

_root = (__file__.rpartition("/")[0] or ".") + "/../../.."
sys.path.insert(0, _root + "/lib")

import nmea  # noqa: E402

LINES = (
    ("rmc", "$GNRMC,023044.000,A,4050.5500,N,11144.9400,E,0.52,84.30,150624,,,A,V*3A"),
    ("gga", "$GNGGA,023044.000,4050.5500,N,11144.9400,E,1,14,0.79,1065.3,M,-26.1,M,,*6C"),
    ("gsv", "$GBGSV,3,1,11,01,45,123,40,02,38,234,37,03,52,198,41,04,33,121,35,1*79"),
)


def us_per_call(fn, arg, n):
    for _ in range(20):
        fn(arg)
    t0 = time.ticks_us()
    for _ in range(n):
        fn(arg)
    return time.ticks_diff(time.ticks_us(), t0) / n


def heap_bytes(fn, arg):
    # The collector is off so the delta is exactly what one call allocates.
    gc.collect()
    gc.disable()
    try:
        a = gc.mem_alloc()
        fn(arg)
        return gc.mem_alloc() - a
    finally:
        gc.enable()


def main(n):
    figures = {"mp_iterations": n}
    loop = us_per_call(lambda x: None, None, n)
    figures["mp_call_overhead_us"] = round(loop, 2)
    for name, line in LINES:
        raw = (line + "\r\n").encode()
        nmea.parse(raw)  # a bad line would fail here, not inside the timed loop
        figures["mp_%s_str_us_per_sentence" % name] = round(us_per_call(nmea.parse, line, n), 2)
        figures["mp_%s_bytes_us_per_sentence" % name] = round(us_per_call(nmea.parse, raw, n), 2)
        figures["mp_%s_bytes_heap_bytes_per_parse" % name] = heap_bytes(nmea.parse, raw)
        figures["mp_%s_str_heap_bytes_per_parse" % name] = heap_bytes(nmea.parse, line)
    print(json.dumps(figures))


main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
