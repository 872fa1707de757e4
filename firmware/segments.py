"""Outbox segment files: append-only lines of records, one CRC per line, named by their first seq.

A line is `crc32hex seq kind payload\\n`, the CRC covering everything after the
first space. A line cut short or damaged fails its CRC and is skipped; a record
is therefore on flash whole or not at all. littlefs commits an append on close,
so a power cut leaves a segment as it was before the append began.
"""

import os

from binascii import crc32

SUFFIX = ".s"


def line(seq, kind, payload):
    """The bytes of one record's line."""
    text = ("%d %s %s" % (seq, kind, payload)).encode()
    return ("%08x " % (crc32(text) & 0xFFFFFFFF)).encode() + text + b"\n"


def parse(raw):
    """(seq, kind, payload text) of one line, or None when it is torn or damaged."""
    if len(raw) < 12 or raw[-1:] != b"\n" or raw[8:9] != b" ":
        return None
    text = raw[9:-1]
    try:
        if int(raw[:8], 16) != crc32(text) & 0xFFFFFFFF:
            return None
        s, kind, payload = text.decode().split(" ", 2)
        return int(s), kind, payload
    except (ValueError, UnicodeError):
        return None


def name(first):
    return "%010d%s" % (first, SUFFIX)


def first_of(fname):
    """The first seq a segment's file name carries, or None for any other file."""
    if not fname.endswith(SUFFIX):
        return None
    try:
        return int(fname[: -len(SUFFIX)])
    except ValueError:
        return None


def write(path, data, new):
    """Append `data` to a segment; `new` starts the file afresh (whatever a failed attempt left there)."""
    with open(path, "wb" if new else "ab") as f:
        f.write(data)


def scan(path):
    """(first seq, last seq, valid lines, bad lines, size in bytes, whether the last line is whole) of a file."""
    first = last = None
    good = bad = size = 0
    tail_ok = True
    with open(path, "rb") as f:
        while True:
            raw = f.readline()
            if not raw:
                break
            size += len(raw)
            rec = parse(raw)
            if rec is None:
                bad += 1
                tail_ok = False
                continue
            tail_ok = True
            good += 1
            if first is None:
                first = rec[0]
            last = rec[0]
    return first, last, good, bad, size, tail_ok


def records(path, after, limit, bad_seen, key):
    """Up to `limit` records with seq > `after`, oldest first; damaged lines are counted once in `bad_seen`.

    Returns (records, new bad lines).
    """
    out = []
    new_bad = 0
    off = 0
    with open(path, "rb") as f:
        while len(out) < limit:
            raw = f.readline()
            if not raw:
                break
            rec = parse(raw)
            if rec is None:
                if (key, off) not in bad_seen:
                    bad_seen.add((key, off))
                    new_bad += 1
            elif rec[0] > after:
                out.append(rec)
            off += len(raw)
    return out, new_bad


def remove(path):
    try:
        os.remove(path)
        return True
    except OSError:
        return False
