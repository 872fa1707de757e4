"""Shared plumbing for the bounded fuzz campaigns: seeded inputs, mutation, chunking, counters, a hang watchdog.

Every campaign is reproducible: its inputs come from one `random.Random` seeded
per target (override with FUZZ_SEED), and its size is a base count times
FUZZ_SCALE (default 1). Results go to build/fuzz/<target>.json.
"""

import json
import os
import random
import signal
import sys
import threading
import time
import traceback
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "build" / "fuzz"
MIN_INPUTS = 100_000
HANG_S = 5.0  # one input taking this long is a hang, not slowness: inputs take microseconds
_EXAMPLES = 5


def scale():
    """The campaign size multiplier from FUZZ_SCALE (default 1)."""
    return float(os.environ.get("FUZZ_SCALE", "1") or 1)


def count(base):
    """How many inputs a campaign part of `base` inputs at scale 1 runs now."""
    return max(1, int(base * scale()))


def seed_for(target):
    """FUZZ_SEED if set, else a fixed seed derived from the target name."""
    env = os.environ.get("FUZZ_SEED")
    return int(env) if env else zlib.crc32(target.encode())


class Hang(BaseException):
    """Raised inside the code under test by the watchdog; BaseException so `except Exception` cannot hide it."""


class Runaway(BaseException):
    """Raised by allocation guards when a target asks for a buffer beyond its documented bound."""


class Watchdog:
    """A per-input alarm (SIGALRM interval timer) that turns a hang into a Hang exception in the main thread.

    pytest-timeout may own the same timer for the whole test: its handler and
    its remaining time are put back on exit, and no input is given longer than
    that remaining time, so the test's own time limit still holds.
    """

    def __init__(self, seconds=HANG_S):
        self.seconds = seconds
        self.enabled = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        self._old = None
        self._deadline = None

    def _fire(self, signum, frame):
        raise Hang("one input ran for more than %.1f s" % self.seconds)

    def __enter__(self):
        if self.enabled:
            outer = signal.getitimer(signal.ITIMER_REAL)[0]
            self._deadline = time.monotonic() + outer if outer > 0 else None
            self._old = signal.signal(signal.SIGALRM, self._fire)
        return self

    def arm(self):
        if self.enabled:
            t = self.seconds
            if self._deadline is not None:
                t = max(0.001, min(t, self._deadline - time.monotonic()))
            signal.setitimer(signal.ITIMER_REAL, t)

    def disarm(self):
        if self.enabled:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def __exit__(self, *exc):
        if self.enabled:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)
            if self._deadline is not None:  # hand the outer timer back what is left of it
                signal.setitimer(signal.ITIMER_REAL, max(0.001, self._deadline - time.monotonic()))
        return False


class Campaign:
    """Counts inputs, outcomes and failures of one target and writes them to build/fuzz/<target>.json."""

    def __init__(self, target):
        self.target = target
        self.seed = seed_for(target)
        self.rng = random.Random(self.seed)
        self.inputs = 0
        self.failures = 0
        self.outcomes = {}
        self.known = {}  # known bug name -> hits (only while its reproducer still fails)
        self.examples = []
        self.slowest_s = 0.0
        self.parts = {}
        self._t0 = time.monotonic()
        self.watchdog = Watchdog()

    def outcome(self, name):
        """Count one normal outcome (a result kind, an error code)."""
        self.outcomes[name] = self.outcomes.get(name, 0) + 1

    def fail(self, data, why, exc=None):
        """Count one failure and keep the first few inputs that caused one."""
        self.failures += 1
        if len(self.examples) < _EXAMPLES:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:]) if exc else ""
            self.examples.append({"input": shorten(data), "why": why, "trace": tb})

    def known_hit(self, name):
        """Count one hit of a known, reported bug (kept apart from failures)."""
        self.known[name] = self.known.get(name, 0) + 1

    def run(self, part, n, one):
        """Call one(rng) n times under the watchdog; `one` classifies its input itself, a Hang is a failure."""
        t0 = time.monotonic()
        rng = self.rng
        with self.watchdog as wd:
            for _ in range(n):
                s = time.perf_counter()
                wd.arm()
                try:
                    one(rng)
                except Hang as e:
                    self.fail("(input of part %s)" % part, "hang", e)
                finally:
                    wd.disarm()
                d = time.perf_counter() - s
                if d > self.slowest_s:
                    self.slowest_s = d
                self.inputs += 1
        self.parts[part] = {"inputs": n, "seconds": round(time.monotonic() - t0, 2)}

    def report(self):
        """The counts as a dict (what is written to build/fuzz/<target>.json)."""
        secs = time.monotonic() - self._t0
        return {
            "target": self.target,
            "inputs": self.inputs,
            "failures": self.failures,
            "seconds": round(secs, 2),
            "inputs_per_s": int(self.inputs / secs) if secs > 0 else None,
            "slowest_input_ms": round(self.slowest_s * 1000, 2),
            "seed": self.seed,
            "scale": scale(),
            "parts": self.parts,
            "outcomes": dict(sorted(self.outcomes.items())),
            "known_bugs": self.known,
            "examples": self.examples,
        }

    def write(self):
        """Write the counts to build/fuzz/<target>.json and return them."""
        rep = self.report()
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / ("%s.json" % self.target)).write_text(json.dumps(rep, indent=2, ensure_ascii=True) + "\n")
        return rep

    def check(self, min_inputs=MIN_INPUTS):
        """Write the counts, then assert the campaign's pass condition."""
        rep = self.write()
        if scale() >= 1:
            assert rep["inputs"] >= min_inputs, "%s: only %d inputs" % (self.target, rep["inputs"])
        assert rep["failures"] == 0, "%s: %d failures, first ones:\n%s" % (
            self.target, rep["failures"], json.dumps(rep["examples"], indent=1))
        return rep


def shorten(data, limit=300):
    """A printable, bounded form of one input for the report."""
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + "... (%d chars)" % len(text)


# -- byte-level generation -------------------------------------------------------------------
_INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\r", b"\n", b"\r\n", b'"', b"\\", b"{", b"}", b"[", b"]",
                b",", b":", b"0", b"-1", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98\x80", b"\xed\xa0\x80")


def random_bytes(rng, lo=0, hi=64):
    """Uniform random bytes of a random length in lo..hi."""
    n = rng.randint(lo, hi)
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def mutate(rng, data, corpus=None, rounds=None):
    """A seeded mutation of `data`: bit flips, byte sets, inserts, deletes, duplicates, splices, truncation."""
    b = bytearray(data)
    for _ in range(rounds or rng.randint(1, 4)):
        op = rng.randrange(9)
        n = len(b)
        if op == 0 and n:  # flip one bit
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # set one byte
            b[rng.randrange(n)] = rng.randrange(256)
        elif op == 2:  # insert random bytes
            i = rng.randint(0, n)
            b[i:i] = random_bytes(rng, 1, 8)
        elif op == 3:  # insert an interesting token
            i = rng.randint(0, n)
            b[i:i] = rng.choice(_INTERESTING)
        elif op == 4 and n:  # delete a range
            i = rng.randrange(n)
            del b[i:i + rng.randint(1, 16)]
        elif op == 5 and n:  # duplicate a range
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 32))
            b[j:j] = b[i:j]
        elif op == 6 and n:  # truncate
            del b[rng.randint(0, n):]
        elif op == 7 and corpus:  # splice a piece of another seed
            other = rng.choice(corpus)
            if other:
                i = rng.randrange(len(other))
                k = rng.randint(0, len(b))
                b[k:k] = other[i:i + rng.randint(1, 32)]
        elif n:  # swap two bytes
            i, j = rng.randrange(n), rng.randrange(n)
            b[i], b[j] = b[j], b[i]
    return bytes(b)


def point_mutate(rng, data):
    """1 to 3 single-byte edits of `data` (set 60 %, insert 20 %, delete 20 %): near-valid values for a decoder."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(buf) + 1)
        op = rng.random()
        if op < 0.6 and buf:
            buf[min(pos, len(buf) - 1)] = rng.getrandbits(8)
        elif op < 0.8:
            buf[pos:pos] = bytes([rng.getrandbits(8)])
        elif buf:
            del buf[pos:pos + 1]
    return bytes(buf)


def chunks(rng, data, most=64):
    """`data` cut at random boundaries into pieces of 1..most bytes (one piece when most >= len)."""
    out = []
    i = 0
    n = len(data)
    while i < n:
        k = rng.randint(1, most)
        out.append(data[i:i + k])
        i += k
    return out


# -- JSON-shaped generation -------------------------------------------------------------------
_WORDS = ("id", "op", "args", "ts", "nonce", "body", "mac", "what", "keys", "set", "", "x", "\u00e9",
          "\u4e2d\u6587", "\U0001f600", "a" * 70)
_STRS = ("", "a", "OK", "query", "config.set", "position", "energy", "address", "\u00e9t\u00e9", "\u5317\u6597",
         "\U0001f600", "\x00", "\ud800", "\\", "\"", "x" * 200, "12345678", "000000000001", "\u00b2", "\u0663",
         "\uff11", "1e309")


def random_scalar(rng):
    """A random JSON scalar, biased towards edges (big ints, non-finite floats, unicode, lone surrogates)."""
    k = rng.randrange(12)
    if k == 0:
        return None
    if k == 1:
        return rng.random() < 0.5
    if k == 2:
        return rng.randint(-3, 3)
    if k == 3:
        return rng.choice((0, 1, -1, 2 ** 31, -2 ** 31, 2 ** 63, 10 ** 30, -10 ** 30, 65535, 65536, 86400))
    if k == 4:
        return rng.randint(-10 ** 6, 10 ** 6)
    if k == 5:
        return rng.choice((0.0, -0.0, 0.5, 1e-300, 1e300, -1.5, float("inf"), float("-inf"), float("nan")))
    if k == 6:
        return rng.uniform(-1e4, 1e4)
    if k in (7, 8):
        return rng.choice(_STRS)
    if k == 9:
        return "".join(chr(rng.choice((rng.randrange(32, 127), rng.randrange(0x80, 0x800),
                                       rng.randrange(0x800, 0x10000), rng.randrange(0x10000, 0x110000))))
                       for _ in range(rng.randint(0, 12)))
    if k == 10:
        return "%0*d" % (rng.randint(1, 14), rng.randrange(10 ** 14))
    return random_bytes(rng, 0, 12).decode("latin-1")


def random_json(rng, depth=3, keys=_WORDS):
    """A random JSON-able value up to `depth` levels of containers; dict keys drawn from `keys` or random."""
    k = rng.randrange(10) if depth > 0 else 0
    if k < 6:
        return random_scalar(rng)
    if k < 8:
        return [random_json(rng, depth - 1, keys) for _ in range(rng.randint(0, 4))]
    d = {}
    for _ in range(rng.randint(0, 4)):
        key = rng.choice(keys) if rng.random() < 0.7 else str(random_scalar(rng))
        d[key] = random_json(rng, depth - 1, keys)
    return d


_deep_cache = {}


def deep_text(rng, depth):
    """JSON text nested `depth` levels deep (arrays, objects or a mix), well-formed; a few variants per depth."""
    variants = _deep_cache.setdefault(depth, [])
    if len(variants) < 4:
        bits = rng.getrandbits(depth)
        opens = ["[" if bits >> i & 1 else '{"k":' for i in range(depth)]
        variants.append("".join(opens) + "0" + "".join("]" if o == "[" else "}" for o in reversed(opens)))
        return variants[-1]
    return variants[rng.randrange(4)]


def dumps(rng, value):
    """JSON text of value, sometimes compact, sometimes with ensure_ascii off (raw UTF-8 and surrogates)."""
    ascii_ = rng.random() < 0.7
    sep = (",", ":") if rng.random() < 0.5 else (", ", ": ")
    return json.dumps(value, ensure_ascii=ascii_, separators=sep, allow_nan=True)


def to_bytes(text):
    """UTF-8 bytes of text, keeping lone surrogates as their (invalid) 3-byte forms."""
    return text.encode("utf-8", "surrogatepass")


# -- umqtt.simple under CPython ---------------------------------------------------------------
def import_umqtt():
    """Import umqtt.simple (from build/lib) with its MicroPython module names mapped to CPython's, then undo the map.

    Only umqtt.simple's own globals keep the CPython modules; nothing else in the
    process sees `usocket` & co., and build/lib (which also holds a MicroPython
    `logging`) is on sys.path only for this import.
    """
    import binascii
    import socket
    import struct

    lib = str(ROOT / "build" / "lib")
    if not (ROOT / "build" / "lib" / "umqtt" / "simple.py").exists():
        return None
    shims = {"usocket": socket, "ustruct": struct, "ubinascii": binascii}
    added = [k for k in shims if k not in sys.modules]
    for k in added:
        sys.modules[k] = shims[k]
    sys.path.append(lib)
    try:
        from umqtt import simple
    finally:
        sys.path.remove(lib)
        for k in added:
            sys.modules.pop(k, None)
    return simple


def reproduces(fn):
    """True when fn() raises AssertionError (a reproducer whose bug is still present); used to gate known bugs."""
    try:
        fn()
    except AssertionError:
        return True
    return False
