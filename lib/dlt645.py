"""DL/T 645-2007 / -1997 frame codec: requests to bytes, reply bytes to frames and values.

Pure and portable (CPython and MicroPython), no I/O. A frame is
`68 A0..A5 68 C L DATA[L] CS 16`: address lowest byte first, every data byte
sent +0x33, CS the byte sum from the first 68 through the data. Decoding skips
any FE wake-up bytes and line noise, finds the end from L (never by looking
for 0x16) and checks CS and the end byte.
"""

import dlt645_values as _values

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# Control codes (requests; a reply sets bit 7, abnormal adds bit 6, "more follows" bit 5)
READ = const(0x11)
READ_NEXT = const(0x12)
READ_ADDRESS = const(0x13)
WRITE = const(0x14)
TIME_SYNC = const(0x08)
READ_1997 = const(0x01)
READ_NEXT_1997 = const(0x02)

REPLY = const(0x80)
ABNORMAL = const(0x40)
FOLLOWUP = const(0x20)

ERR_NO_DATA = const(0x02)  # ERR bit 1: the meter does not have the item asked for (a standing refusal)

MAX_DATA = const(200)  # the standard's limit on L for any frame
OFFSET = const(0x33)

BROADCAST = "999999999999"
WILDCARD = "AAAAAAAAAAAA"

# ERR byte bit names, bit 0 first
_REASONS = ("other", "no such data", "password/unauthorised", "baud not changeable",
            "too many year zones", "too many day slots", "too many tariffs", "reserved")


class DLT645Error(Exception):
    """Base of every meter-link error."""


class Incomplete(DLT645Error):
    """The buffer holds no complete frame yet: read more bytes."""


class Corrupt(DLT645Error):
    """A frame (or value) failed its checks: bad CS, end byte, length, or BCD."""


class NoReply(DLT645Error):
    """The meter did not answer within the bounded waits (after retries)."""


class MeterError(DLT645Error):
    """The meter answered with an abnormal reply: `.err` the ERR byte, `.reasons` its bit names."""

    def __init__(self, err, address=None):
        self.err = err
        self.reasons = err_reasons(err)
        self.address = address
        self.no_data = bool(err & ERR_NO_DATA)  # "no such data": what a meter answers for an item it lacks
        super().__init__("meter %s: %s" % (address, ", ".join(self.reasons) or "err 0"))


def err_reasons(err):
    """The names of the bits set in an ERR byte, bit 0 first."""
    return [_REASONS[b] for b in range(8) if err & (1 << b)]


# -- addresses ---------------------------------------------------------------
def _nibble(ch):
    c = ord(ch)
    if 48 <= c <= 57:
        return c - 48
    if c in (65, 97):  # 'A' / 'a': wildcard digit
        return 10
    raise ValueError("address digit must be 0-9 or A: %r" % ch)


def encode_address(address):
    """'000072007201' -> b'\\x01\\x72\\x00\\x72\\x00\\x00' (lowest byte first); A digits are wildcards."""
    if len(address) != 12:
        raise ValueError("address must have 12 digits: %r" % (address,))
    out = bytearray(6)
    for k in range(6):
        out[k] = _nibble(address[10 - 2 * k]) << 4 | _nibble(address[11 - 2 * k])
    return bytes(out)


def decode_address(buf, start=0):
    """The 6 address bytes at buf[start:] -> 12-character string, highest byte first."""
    return "".join("%02X" % buf[start + k] for k in range(5, -1, -1))


def address_matches(pattern, address):
    """True if `address` fits `pattern`, where A digits in the pattern match any digit."""
    for k in range(12):
        p = pattern[k]
        if p not in "Aa" and p != address[k]:
            return False
    return True


def di_bytes(di, n=4):
    """A DI as n bytes, lowest first (without the 0x33 offset)."""
    return bytes((di >> (8 * k)) & 0xFF for k in range(n))


def _pack_hex(text, nbytes):
    # Password / operator digits, lowest byte first like every multi-byte field.
    v = int(text, 16)
    return bytes((v >> (8 * k)) & 0xFF for k in range(nbytes))


# -- frames -------------------------------------------------------------------
def encode(address, control, data=b""):
    """One frame, no FE preamble; `data` is given without the 0x33 offset."""
    n = len(data)
    if n > MAX_DATA:
        raise ValueError("data longer than %d bytes" % MAX_DATA)
    out = bytearray(12 + n)
    out[0] = 0x68
    out[1:7] = encode_address(address)
    out[7] = 0x68
    out[8] = control
    out[9] = n
    for k in range(n):
        out[10 + k] = (data[k] + OFFSET) & 0xFF
    cs = 0
    for k in range(10 + n):
        cs += out[k]
    out[10 + n] = cs & 0xFF
    out[11 + n] = 0x16
    return bytes(out)


class Frame:
    """A decoded frame: address, control, data (0x33 removed), and where it lay in the buffer."""

    def __init__(self, address, control, data, start, end):
        self.address = address
        self.control = control
        self.data = data
        self.start = start  # index of the first 68
        self.end = end  # index just past the 16

    @property
    def function(self):
        return self.control & 0x1F

    @property
    def is_reply(self):
        return bool(self.control & REPLY)

    @property
    def abnormal(self):
        return self.control & (REPLY | ABNORMAL) == REPLY | ABNORMAL

    @property
    def followup(self):
        return self.control & (REPLY | ABNORMAL | FOLLOWUP) == REPLY | FOLLOWUP

    @property
    def err(self):
        return self.data[0] if self.abnormal else None

    @property
    def error(self):
        """A MeterError for an abnormal reply, else None."""
        return MeterError(self.data[0], self.address) if self.abnormal else None

    def check(self):
        """Raise MeterError if this is an abnormal reply; return self otherwise."""
        if self.abnormal:
            raise MeterError(self.data[0], self.address)
        return self

    def __repr__(self):
        return "Frame(%s, %02X, %s)" % (self.address, self.control, bytes(self.data))


def _candidate(buf, i, end):
    """Check a frame starting at buf[i] == 0x68: a Frame, None (need more bytes), False (no frame), or why bad."""
    if i + 7 >= end:
        return None
    if buf[i + 7] != 0x68:
        return False
    if i + 9 >= end:
        return None
    n = buf[i + 9]
    control = buf[i + 8]
    if n > MAX_DATA:
        return "length %d" % n
    if control & (REPLY | ABNORMAL) == REPLY | ABNORMAL and n != 1:
        return "abnormal reply with %d data bytes" % n
    last = i + 11 + n
    if last >= end:
        return None
    cs = 0
    for k in range(i, i + 10 + n):
        cs += buf[k]
    if cs & 0xFF != buf[last - 1]:
        return "checksum"
    if buf[last] != 0x16:
        return "end byte"
    data = bytearray(n)
    for k in range(n):
        data[k] = (buf[i + 10 + k] - OFFSET) & 0xFF
    return Frame(decode_address(buf, i + 1), control, bytes(data), i, last + 1)


def decode(buf, start=0, end=None):
    """The first valid frame in buf[start:end], skipping FE and noise; raises Incomplete or Corrupt.

    Corrupt means no frame checks out and none is still arriving, except possibly one
    starting inside the bad frame: a stream reader keeps reading until the line is quiet.
    """
    if end is None:
        end = len(buf)
    pending = False
    bad = None
    bad_end = start  # end of the last complete candidate that failed its checks
    for i in range(start, end):
        if buf[i] != 0x68:
            continue
        r = _candidate(buf, i, end)
        if r is None:
            if i >= bad_end:
                pending = True
        elif isinstance(r, Frame):
            return r
        elif r:
            bad = r
            n = buf[i + 9]
            bad_end = max(bad_end, i + 12 + n if n <= MAX_DATA else i + 10)
    if pending:
        raise Incomplete("frame not complete")
    if bad:
        raise Corrupt(bad)
    raise Incomplete("no frame start")


def split_reply(frame, di_len=4):
    """A read reply's data -> (DI, value bytes); Corrupt if it is shorter than the DI."""
    d = frame.data
    if len(d) < di_len:
        raise Corrupt("reply shorter than its DI")
    di = 0
    for k in range(di_len - 1, -1, -1):
        di = di << 8 | d[k]
    return di, d[di_len:]


# -- requests -------------------------------------------------------------------
def read_request(address, di):
    """Read data (11) of a 4-byte DI."""
    return encode(address, READ, di_bytes(di))


def read_next_request(address, di, seq):
    """Read follow-up (12): DI and the frame sequence number 1..255."""
    return encode(address, READ_NEXT, di_bytes(di) + bytes((seq & 0xFF,)))


def read_address_request():
    """Read address (13), to AA..AA: only valid with one meter on the bus."""
    return encode(WILDCARD, READ_ADDRESS)


def write_request(address, di, value, password="000000", level=2, operator="00000000"):
    """Write data (14): DI, password (level + 3 bytes), operator code (4 bytes), value bytes."""
    data = di_bytes(di) + bytes((level,)) + _pack_hex(password, 3) + _pack_hex(operator, 4) + value
    return encode(address, WRITE, data)


def time_sync_request(tm):
    """Broadcast time sync (08) to 99..99; tm = (year, month, day, hour, minute, second)."""
    year, month, day, hour, minute, second = tm[:6]
    fields = (second, minute, hour, day, month, year % 100)
    return encode(BROADCAST, TIME_SYNC, bytes(_values.int_to_bcd(f, 1)[0] for f in fields))


def read_1997_request(address, di):
    """DL/T 645-1997 read (01) of a 2-byte DI."""
    return encode(address, READ_1997, di_bytes(di, 2))


def read_next_1997_request(address, di):
    """DL/T 645-1997 read follow-up (02)."""
    return encode(address, READ_NEXT_1997, di_bytes(di, 2))


# -- values -------------------------------------------------------------------
fmt = _values.fmt
table = _values.table
encode_value = _values.encode_value


def fixed(di, data):
    """A number DI's value bytes -> (integer in units of 10**-decimals, decimals), exact; a block gives a list."""
    if _values.fmt(di) is None:
        raise DLT645Error("DI %08X not in the table" % di)
    try:
        return _values.decode_fixed(di, data)
    except ValueError as e:
        raise Corrupt("DI %08X: %s" % (di, e))


def value(di, data):
    """A DI's value bytes (no DI, 0x33 removed) -> number (kWh, V, A...), str (date, time, digits) or list (block)."""
    if _values.fmt(di) is None:
        raise DLT645Error("DI %08X not in the table" % di)
    try:
        return _values.decode_value(di, data)
    except ValueError as e:
        raise Corrupt("DI %08X: %s" % (di, e))
