"""DL/T 645-2007 frozen data, settlement data, load profile, event records and status words: DIs and pure decoders.

Pure and portable (CPython and MicroPython), no I/O. Value bytes come with the
0x33 offset removed, lowest byte first. Energies stay exact integers in
hundredths of a kWh (XXXXXX.XX); time stamps are tuples (year, month, day,
hour, minute[, second]). In these DIs DI0, the "N-th previous" index, is
binary (the 62nd previous daily freeze is 0x3E), not BCD. A record a meter has
not written yet (all 00, or all FF) decodes to None. Anything else that does
not fit a known layout raises ValueError: a meter whose variant is not known
is refused cleanly rather than misread.
"""

from dlt645_values import bcd_to_int, int_to_bcd

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# -- daily freeze (05 06 xx NN): NN = 1 (the latest) .. DAILY_DEPTH ----------------------------
DAILY_TIME = const(0x05060000)  # + NN: YYMMDDhhmm of the N-th previous daily freeze
DAILY_FWD = const(0x05060100)  # + NN: forward active energy, total then tariffs (4 bytes each)
DAILY_REV = const(0x05060200)  # + NN: reverse active energy, total then tariffs
DAILY_DEPTH = const(62)

# -- settlement day (结算日): DI0 00 = current, 01..0C = previous 1..12 settlements -----------------
SETTLE_FWD_BLOCK = const(0x0001FF00)  # + NN: forward active, total then tariffs
SETTLE_FWD = const(0x00010000)  # + NN: forward active total
SETTLE_REV = const(0x00020000)  # + NN: reverse active total
SETTLE_DEPTH = const(12)
SETTLE_DAY_1 = const(0x04000B01)  # DDhh of settlement day 1 (..03)

# -- load profile (负荷记录, 06 cc 00 0m): class cc = 00 all groups, 01..06 one group; m the request mode --------
PROFILE = const(0x06000000)
PROFILE_EARLIEST = const(0)  # request data NN: the earliest NN records
PROFILE_AT = const(1)  # NN + mmhhDDMMYY: NN records from the given time
PROFILE_LATEST = const(2)  # NN (= 1): the most recent record
PROFILE_MODE = const(0x04000901)  # 负荷记录模式字: which groups are recorded
PROFILE_START = const(0x04000A01)  # MMDDhhmm: recording start
PROFILE_INTERVAL = const(0x04000A02)  # + (class - 1): minutes between records of a class, 2 bytes
# a record's groups in order: (name, bytes, ((field, bytes each, signed, count), ...)); values are integers in
# the unit of the register's last digit: V 0.1, A 0.001, Hz 0.01, kW / kvar 0.0001, power factor 0.001, kWh / kvarh 0.01
PROFILE_GROUPS = (
    ("vif", 17, (("v", 2, False, 3), ("i", 3, True, 3), ("f", 2, False, 1))),
    ("power", 24, (("p", 3, True, 4), ("q", 3, True, 4))),
    ("pf", 8, (("pf", 2, True, 4),)),
    ("energy", 16, (("fwd", 4, False, 1), ("rev", 4, False, 1), ("q_comb", 4, True, 2))),
    ("quadrants", 16, (("q_quad", 4, False, 4),)),
    ("demand", 6, (("demand", 3, True, 2),)),
)
_PROFILE_SEP = const(0xAA)  # never a BCD byte, so a safe separator


def profile_di(cls, mode):
    """DI of a load-profile read: class 0 (every group) or 1..6, mode PROFILE_EARLIEST / _AT / _LATEST."""
    if not 0 <= cls <= 6 or mode not in (PROFILE_EARLIEST, PROFILE_AT, PROFILE_LATEST):
        raise ValueError("load profile class 0..6 and mode 0..2, got %r, %r" % (cls, mode))
    return PROFILE + (cls << 16) + mode


def profile_request(count, at=None):
    """The request data after the DI: NN (BCD, 1..99) and, for PROFILE_AT, the start time (y, mo, d, h, mi)."""
    if not 1 <= count <= 99:
        raise ValueError("load profile count 1..99, got %r" % (count,))
    out = bytearray(int_to_bcd(count, 1))
    if at is not None:
        y, mo, d, h, mi = at[:5]
        for v in (mi, h, d, mo, y % 100):
            out += int_to_bcd(v, 1)
    return bytes(out)


def decode_profile(data):
    """One load-profile record (the reply's bytes after the DI, 0x33 removed) -> dict, or ValueError.

    `A0 A0, length, YYMMDDhhmm, 6 groups each followed by AA (a group the meter does not record is empty),
    checksum (byte sum from the first A0), E5`. The length counts the bytes between itself and the checksum
    (some meters count up to the end code: both accepted). Result: {"at": (y, mo, d, h, mi)} plus, per group
    present: "v" [A, B, C], "i" [A, B, C], "f"; "p" [total, A, B, C], "q" [...]; "pf" [total, A, B, C];
    "fwd", "rev", "q_comb" [1, 2]; "q_quad" [Q1..Q4]; "demand" [active, reactive] (see PROFILE_GROUPS).
    """
    n = len(data)
    if n < 10:
        raise ValueError("load profile record of %d bytes" % n)
    if data[0] == 0xE0 and data[1] == 0xE0:
        raise ValueError("load profile record marked incorrect by the meter (E0 E0)")
    if data[0] != 0xA0 or data[1] != 0xA0 or data[-1] != 0xE5:
        raise ValueError("not a load profile record (no A0 A0 .. E5)")
    if data[2] not in (n - 5, n - 3):
        raise ValueError("load profile length %d does not fit %d bytes" % (data[2], n))
    cs = 0
    for b in data[:-2]:
        cs = (cs + b) & 0xFF
    if cs != data[-2]:
        raise ValueError("load profile checksum %02X, want %02X" % (data[-2], cs))
    at = decode_stamp(data, 3, 5)
    if at is None:
        raise ValueError("load profile record without a time")
    parts = bytes(data[8:-2]).split(bytes((_PROFILE_SEP,)))
    if len(parts) != len(PROFILE_GROUPS) + 1 or parts[-1]:
        raise ValueError("load profile record of %d groups, want %d" % (len(parts) - 1, len(PROFILE_GROUPS)))
    out = {"at": at}
    for part, (name, size, fields) in zip(parts, PROFILE_GROUPS):
        if not part:
            continue  # not recorded by this meter
        if len(part) != size:
            raise ValueError("load profile group %s of %d bytes, want %d" % (name, len(part), size))
        i = 0
        for field, width, signed, count in fields:
            vals = [bcd_to_int(part[i + width * k:i + width * (k + 1)], signed) for k in range(count)]
            out[field] = vals[0] if count == 1 else vals
            i += width * count
    return out


# -- status words 04000501..07 (2 bytes each) and their block -----------------------------------------
STATUS_WORD = const(0x04000500)  # + k (1..7)
STATUS_BLOCK = const(0x040005FF)

EVENT_DEPTH = const(10)  # meters keep the last 10 records of each event

# kind, count DI (3-byte count), record base DI (+ N = 1..10), record lengths accepted
EVENTS = (
    ("power_down", 0x03110000, 0x03110000, (12,)),
    ("programming", 0x03300000, 0x03300000, (50,)),
    ("meter_clear", 0x03300100, 0x03300100, (106,)),
    ("event_clear", 0x03300300, 0x03300300, (14,)),
    ("clock_set", 0x03300400, 0x03300400, (16,)),
    ("meter_cover", 0x03300D00, 0x03300D00, (60,)),
    ("terminal_cover", 0x03300E00, 0x03300E00, (60, 14)),  # 14 bytes per one source: layout unconfirmed
)
KINDS = tuple(e[0] for e in EVENTS)

# (word 1..7, bit, name): status flags reported by name (bits as the sources agree on them)
STATUS_BITS = (
    (1, 2, "clock_battery_low"),
    (1, 3, "backup_battery_low"),
    (1, 4, "active_reversed"),
    (1, 5, "reactive_reversed"),
    (1, 13, "memory_fault"),
    (1, 15, "clock_fault"),
    (3, 4, "relay_open"),
    (3, 6, "relay_cmd_open"),
    (3, 7, "pretrip_alarm"),
    (3, 12, "power_guarantee"),
    (7, 5, "power_down"),
    (7, 9, "cover_open"),
    (7, 10, "terminal_cover_open"),
)


def _nth(base, n, depth):
    if not 1 <= n <= depth:
        raise ValueError("N-th previous must be 1..%d, got %r" % (depth, n))
    return base + n  # binary, not BCD


def daily_time_di(n):
    """DI of the time of the n-th previous daily freeze (1 = the latest)."""
    return _nth(DAILY_TIME, n, DAILY_DEPTH)


def daily_fwd_di(n):
    """DI of the forward active energies (total + tariffs) of the n-th previous daily freeze."""
    return _nth(DAILY_FWD, n, DAILY_DEPTH)


def daily_rev_di(n):
    """DI of the reverse active energies (total + tariffs) of the n-th previous daily freeze."""
    return _nth(DAILY_REV, n, DAILY_DEPTH)


def settle_fwd_block_di(n):
    """DI of the forward active block of the n-th previous settlement (0 = the current period)."""
    if not 0 <= n <= SETTLE_DEPTH:
        raise ValueError("settlement index must be 0..%d" % SETTLE_DEPTH)
    return SETTLE_FWD_BLOCK + n


def settle_di(base, n):
    """DI of the n-th previous settlement (1..12) of a settlement family (SETTLE_FWD_BLOCK, _FWD, _REV)."""
    return _nth(base, n, SETTLE_DEPTH)


def decode_settle_day(data):
    """A settlement day DDhh (2 bytes, hh first) -> (day 1..28, hour 0..23); ValueError otherwise."""
    if len(data) != 2:
        raise ValueError("settlement day of %d bytes, want 2" % len(data))
    hh, dd = _byte(data, 0), _byte(data, 1)
    if not (1 <= dd <= 28 and hh <= 23):
        raise ValueError("settlement day %02d %02dh is not a day 1..28 and an hour" % (dd, hh))
    return dd, hh


def settled_empty(data):
    """True for a settlement record the meter has not written (all 00 or all FF)."""
    return _empty(data)


def event_spec(kind):
    """(kind, count DI, record base DI, record lengths) of an event kind; ValueError if unknown."""
    for e in EVENTS:
        if e[0] == kind:
            return e
    raise ValueError("unknown event kind %r" % (kind,))


def event_count_di(kind):
    """DI of an event kind's total count."""
    return event_spec(kind)[1]


def event_record_di(kind, n):
    """DI of the n-th latest record (1..10) of an event kind."""
    return _nth(event_spec(kind)[2], n, EVENT_DEPTH)


# -- field decoders ---------------------------------------------------------------------------------
def _byte(data, i):
    return bcd_to_int(data[i:i + 1])


def _empty(data):
    first = data[0]
    if first not in (0x00, 0xFF):
        return False
    for b in data:
        if b != first:
            return False
    return True


def _days_in(year, month):
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def decode_stamp(data, start=0, n=6):
    """YYMMDDhhmm[ss] (n = 5 or 6 bytes, lowest first) at data[start:] -> tuple, or None if never written."""
    raw = data[start:start + n]
    if len(raw) != n:
        raise ValueError("time stamp needs %d bytes, got %d" % (n, len(raw)))
    if _empty(raw):
        return None
    f = [_byte(raw, i) for i in range(n)]  # lowest first: [ss] mm hh DD MM YY
    if n == 6:
        ss, f = f[0], f[1:]
        if ss > 59:
            raise ValueError("bad seconds")
    mi, hh, dd, mo, yy = f
    year = 2000 + yy
    if not (1 <= mo <= 12 and 1 <= dd <= _days_in(year, mo) and hh <= 23 and mi <= 59):
        raise ValueError("bad time stamp")
    return (year, mo, dd, hh, mi, ss) if n == 6 else (year, mo, dd, hh, mi)


def stamp_text(tm):
    """(y, mo, d, h, mi[, s]) -> 'YYYY-MM-DDThh:mm[:ss]'; None stays None."""
    if tm is None:
        return None
    out = "%04d-%02d-%02dT%02d:%02d" % tm[:5]
    return out + (":%02d" % tm[5]) if len(tm) > 5 else out


def date_text(tm):
    """The date part of a stamp tuple: 'YYYY-MM-DD'."""
    return "%04d-%02d-%02d" % tm[:3]


def decode_energies(data, count=None):
    """n x XXXXXX.XX (4 bytes each) -> [hundredths of kWh, ...]; `count` items only if given."""
    n = len(data)
    if n == 0 or n % 4:
        raise ValueError("energy block of %d bytes is not a multiple of 4" % n)
    if count is not None and n < 4 * count:
        raise ValueError("energy block of %d bytes, want %d items" % (n, count))
    items = n // 4 if count is None else count
    return [bcd_to_int(data[4 * i:4 * i + 4]) for i in range(items)]


def decode_freeze_time(data):
    """A daily freeze time (YYMMDDhhmm, 5 bytes) -> (y, mo, d, h, mi), or None if that freeze is empty."""
    if len(data) != 5:
        raise ValueError("freeze time of %d bytes, want 5" % len(data))
    return decode_stamp(data, 0, 5)


def decode_count(data):
    """An event count (NNNNNN, 3 bytes) -> int."""
    if len(data) != 3:
        raise ValueError("event count of %d bytes, want 3" % len(data))
    return bcd_to_int(data)


def _operator(data, start):
    raw = data[start:start + 4]
    return "".join("%02X" % raw[i] for i in range(3, -1, -1))


def _di_list(data, start, count):
    out = []
    for k in range(count):
        i = start + 4 * k
        di = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        if di != 0xFFFFFFFF and di != 0:
            out.append(di)
    return out


def decode_event(kind, data):
    """One event record of `kind` -> dict (start/end/at stamps, energies in hundredths), or None if empty.

    power_down, meter_cover, terminal_cover: {"start", "end"} (end None while the event lasts), covers add
    {"before", "after"}: [fwd, rev] active totals. clock_set: {"operator", "before", "after"}.
    programming: {"at", "operator", "dis"}. meter_clear: {"at", "operator", "before": [fwd, rev]}.
    event_clear: {"at", "operator", "di"}.
    """
    spec = event_spec(kind)
    n = len(data)
    if n not in spec[3]:
        raise ValueError("%s record of %d bytes, want %s" % (kind, n, "/".join(str(x) for x in spec[3])))
    if _empty(data):
        return None
    if kind in ("power_down", "meter_cover", "terminal_cover"):
        if n != 12 and n != 60:
            raise ValueError("%s record of %d bytes: layout not known" % (kind, n))
        out = {"start": decode_stamp(data, 0), "end": decode_stamp(data, 6)}
        if out["start"] is None:
            raise ValueError("%s record without a start" % kind)
        if n == 60:
            out["before"] = decode_energies(data[12:20])
            out["after"] = decode_energies(data[36:44])
        return out
    if kind == "clock_set":
        return {"operator": _operator(data, 0), "before": decode_stamp(data, 4), "after": decode_stamp(data, 10)}
    out = {"at": decode_stamp(data, 0), "operator": _operator(data, 6)}
    if kind == "programming":
        out["dis"] = _di_list(data, 10, 10)
    elif kind == "meter_clear":
        out["before"] = decode_energies(data[10:18])
    else:  # event_clear
        dis = _di_list(data, 10, 1)
        out["di"] = dis[0] if dis else None
    return out


def decode_status(data, first=1):
    """Status words (2 bytes each, from word `first`) -> {"words": [..], flag name: bool, ...}.

    The block 040005FF is 7 words (14 bytes) in most meters, 16 bytes in one source: extra words are kept
    in "words" and not named.
    """
    n = len(data)
    if n == 0 or n % 2:
        raise ValueError("status of %d bytes is not whole words" % n)
    words = [data[i] | data[i + 1] << 8 for i in range(0, n, 2)]
    out = {"words": words}
    for word, bit, name in STATUS_BITS:
        k = word - first
        if 0 <= k < len(words):
            out[name] = bool(words[k] >> bit & 1)
    return out
