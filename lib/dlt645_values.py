"""DL/T 645 data identifiers: the value formats of the DI table and their BCD codec.

Pure and portable (CPython and MicroPython). Values are packed BCD, lowest byte
first, with the 0x33 offset already removed. A signed format keeps its sign in
the top bit of the most significant byte. Errors are `ValueError`; the framing
codec (dlt645) turns decoding errors into `dlt645.Corrupt`.
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# Value kinds
NUMBER = const(0)  # decimal number: nbytes of BCD, `decimals` after the point
DATE = const(1)  # YYMMDDWW -> "20YY-MM-DD" (WW, the weekday, 0 = Sunday, is checked and recomputed)
TIME = const(2)  # hhmmss -> "hh:mm:ss"
DIGITS = const(3)  # 12 BCD digits (addresses, meter numbers) -> "000072007201"
BLOCK = const(4)  # several NUMBER items of nbytes each, counted from the data length -> list

# (DI, kind, bytes per item, decimals, signed, unit). A tuple of constants: compiled
# into the bytecode, so it costs no RAM at import.
_TABLE = (
    # DL/T 645-2007 (4-byte DIs)
    (0x00000000, NUMBER, 4, 2, True, "kWh"),  # combined active energy, total
    (0x00010000, NUMBER, 4, 2, False, "kWh"),  # forward active energy, total
    (0x00010100, NUMBER, 4, 2, False, "kWh"),  # forward active, tariff 1 .. 4
    (0x00010200, NUMBER, 4, 2, False, "kWh"),
    (0x00010300, NUMBER, 4, 2, False, "kWh"),
    (0x00010400, NUMBER, 4, 2, False, "kWh"),
    (0x0001FF00, BLOCK, 4, 2, False, "kWh"),  # forward active: total then tariffs 1..n
    (0x00020000, NUMBER, 4, 2, False, "kWh"),  # reverse active energy, total
    (0x02010100, NUMBER, 2, 1, False, "V"),  # voltage phase A / B / C
    (0x02010200, NUMBER, 2, 1, False, "V"),
    (0x02010300, NUMBER, 2, 1, False, "V"),
    (0x02020100, NUMBER, 3, 3, True, "A"),  # current phase A / B / C
    (0x02020200, NUMBER, 3, 3, True, "A"),
    (0x02020300, NUMBER, 3, 3, True, "A"),
    (0x02030000, NUMBER, 3, 4, True, "kW"),  # active power total, phase A / B / C
    (0x02030100, NUMBER, 3, 4, True, "kW"),
    (0x02030200, NUMBER, 3, 4, True, "kW"),
    (0x02030300, NUMBER, 3, 4, True, "kW"),
    (0x02060000, NUMBER, 2, 3, True, ""),  # power factor, total
    (0x02800002, NUMBER, 2, 2, False, "Hz"),  # grid frequency
    (0x04000101, DATE, 4, 0, False, ""),
    (0x04000102, TIME, 3, 0, False, ""),
    (0x04000401, DIGITS, 6, 0, False, ""),  # communication address
    (0x04000402, DIGITS, 6, 0, False, ""),  # meter number
    # DL/T 645-1997 (2-byte DIs)
    (0x9010, NUMBER, 4, 2, False, "kWh"),  # forward active energy, total
    (0xB611, NUMBER, 2, 0, False, "V"),  # voltage phase A
    (0xB621, NUMBER, 2, 2, False, "A"),  # current phase A
    (0xB630, NUMBER, 3, 4, False, "kW"),  # active power
    (0xC010, DATE, 4, 0, False, ""),
    (0xC011, TIME, 3, 0, False, ""),
    (0xC032, DIGITS, 6, 0, False, ""),  # meter number
)


def fmt(di):
    """The format row (di, kind, nbytes, decimals, signed, unit) of a DI, or None if not in the table."""
    for row in _TABLE:
        if row[0] == di:
            return row
    return None


def table():
    """Every DI in the table, in table order."""
    return [row[0] for row in _TABLE]


def is_1997(di):
    """True for a 2-byte DL/T 645-1997 DI."""
    return 0 < di <= 0xFFFF


def _row(di):
    row = fmt(di)
    if row is None:
        raise ValueError("DI %08X not in the table" % di)
    return row


# -- BCD -------------------------------------------------------------------
def bcd_to_int(data, signed=False):
    """Packed BCD, lowest byte first -> int; ValueError on a non-decimal nibble."""
    n = 0
    neg = False
    top = len(data) - 1
    for i in range(top, -1, -1):
        b = data[i]
        if signed and i == top:
            neg = bool(b & 0x80)
            b &= 0x7F
        hi = b >> 4
        lo = b & 0x0F
        if hi > 9 or lo > 9:
            raise ValueError("not BCD: %02X" % data[i])
        n = n * 100 + hi * 10 + lo
    return -n if neg else n


def int_to_bcd(n, nbytes, signed=False):
    """int -> packed BCD of nbytes, lowest byte first; ValueError if it does not fit."""
    neg = n < 0
    if neg and not signed:
        raise ValueError("negative value for an unsigned format")
    n = -n if neg else n
    limit = 10 ** (2 * nbytes)
    if signed:
        limit = 8 * 10 ** (2 * nbytes - 1)  # the top nibble keeps the sign bit: 0..7 only
    if n >= limit:
        raise ValueError("%d does not fit in %d BCD bytes" % (n, nbytes))
    out = bytearray(nbytes)
    for i in range(nbytes):
        out[i] = ((n // 10) % 10) << 4 | (n % 10)
        n //= 100
    if neg:
        out[nbytes - 1] |= 0x80
    return bytes(out)


def _number(n, decimals):
    return n / 10 ** decimals if decimals else n


def _weekday(year, month, day):
    """0 = Sunday .. 6 = Saturday (Sakamoto's method)."""
    t = (0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4)
    if month < 3:
        year -= 1
    return (year + year // 4 - year // 100 + year // 400 + t[month - 1] + day) % 7


def _two(data, i):
    # One BCD byte as an int 0..99.
    return bcd_to_int(data[i:i + 1])


def _decode_date(data):
    ww, dd, mm, yy = _two(data, 0), _two(data, 1), _two(data, 2), _two(data, 3)
    if not (1 <= mm <= 12 and 1 <= dd <= 31 and ww <= 6):
        raise ValueError("bad date")
    return "20%02d-%02d-%02d" % (yy, mm, dd)


def _decode_time(data):
    ss, mi, hh = _two(data, 0), _two(data, 1), _two(data, 2)
    if hh > 23 or mi > 59 or ss > 59:
        raise ValueError("bad time")
    return "%02d:%02d:%02d" % (hh, mi, ss)


def _digits(data):
    for i in range(len(data)):
        _two(data, i)  # checks both nibbles
    return "".join("%02X" % data[i] for i in range(len(data) - 1, -1, -1))


def decode_value(di, data):
    """A DI's value bytes (no DI, 0x33 removed) -> number, str or (block) list; ValueError if malformed."""
    _, kind, nbytes, decimals, signed, _ = _row(di)
    n = len(data)
    if kind == BLOCK:
        if n == 0 or n % nbytes:
            raise ValueError("block of %d bytes is not a multiple of %d" % (n, nbytes))
        return [_number(bcd_to_int(data[i:i + nbytes], signed), decimals) for i in range(0, n, nbytes)]
    if n != nbytes:
        raise ValueError("DI %08X wants %d value bytes, got %d" % (di, nbytes, n))
    if kind == NUMBER:
        return _number(bcd_to_int(data, signed), decimals)
    if kind == DATE:
        return _decode_date(data)
    if kind == TIME:
        return _decode_time(data)
    return _digits(data)


def decode_fixed(di, data):
    """A NUMBER or BLOCK DI's value bytes -> (int, decimals) or ([int, ...], decimals), with no float involved.

    The value is int / 10**decimals exactly: the meter's own digits, for a wire format that must not
    round (boards have 32-bit floats). ValueError for other kinds or malformed bytes.
    """
    _, kind, nbytes, decimals, signed, _ = _row(di)
    n = len(data)
    if kind == BLOCK:
        if n == 0 or n % nbytes:
            raise ValueError("block of %d bytes is not a multiple of %d" % (n, nbytes))
        return [bcd_to_int(data[i:i + nbytes], signed) for i in range(0, n, nbytes)], decimals
    if kind != NUMBER:
        raise ValueError("DI %08X is not a number" % di)
    if n != nbytes:
        raise ValueError("DI %08X wants %d value bytes, got %d" % (di, nbytes, n))
    return bcd_to_int(data, signed), decimals


def _split(text, sep, count):
    parts = text.split(sep)
    if len(parts) != count:
        raise ValueError("bad field: %r" % (text,))
    return [int(p) for p in parts]


def _scaled(v, decimals):
    # round() half-to-even on an exact .5 is fine: such inputs come from our own values.
    return int(round(v * 10 ** decimals)) if decimals else int(v)


def encode_value(di, v):
    """The value bytes for a DI (inverse of decode_value); ValueError if `v` does not fit the format."""
    _, kind, nbytes, decimals, signed, _ = _row(di)
    if kind == NUMBER:
        return int_to_bcd(_scaled(v, decimals), nbytes, signed)
    if kind == BLOCK:
        out = b""
        for item in v:
            out += int_to_bcd(_scaled(item, decimals), nbytes, signed)
        return out
    if kind == DATE:
        y, m, d = _split(v, "-", 3)
        if not (2000 <= y <= 2099 and 1 <= m <= 12 and 1 <= d <= 31):
            raise ValueError("bad date: %r" % (v,))
        return bytes((int_to_bcd(_weekday(y, m, d), 1)[0], int_to_bcd(d, 1)[0], int_to_bcd(m, 1)[0],
                      int_to_bcd(y - 2000, 1)[0]))
    if kind == TIME:
        h, mi, s = _split(v, ":", 3)
        if not (0 <= h <= 23 and 0 <= mi <= 59 and 0 <= s <= 59):
            raise ValueError("bad time: %r" % (v,))
        return bytes((int_to_bcd(s, 1)[0], int_to_bcd(mi, 1)[0], int_to_bcd(h, 1)[0]))
    if len(v) != 2 * nbytes or not v.isdigit():
        raise ValueError("want %d digits: %r" % (2 * nbytes, v))
    return int_to_bcd(int(v), nbytes)
