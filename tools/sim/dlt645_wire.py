"""DL/T 645 on the simulated bus: frames, BCD values and the DI formats the simulated meters serve.

Written independently of lib/dlt645.py on purpose: the firmware's codec and this one check each other
in the tests.
"""

import datetime

BROADCAST = "999999999999"
ERR_OTHER = 0x01
ERR_NO_DATA = 0x02  # "no such data": the standard's answer for an item the meter does not have
ERR_UNAUTHORISED = 0x04

# DI -> (kind, bytes, decimals, signed); kinds: n number, b block of numbers, d date, t time, s digits
FORMATS = {
    0x00000000: ("n", 4, 2, True), 0x00010000: ("n", 4, 2, False),
    0x00010100: ("n", 4, 2, False), 0x00010200: ("n", 4, 2, False),
    0x00010300: ("n", 4, 2, False), 0x00010400: ("n", 4, 2, False),
    0x0001FF00: ("b", 4, 2, False), 0x00020000: ("n", 4, 2, False),
    0x02010100: ("n", 2, 1, False), 0x02010200: ("n", 2, 1, False), 0x02010300: ("n", 2, 1, False),
    0x02020100: ("n", 3, 3, True), 0x02020200: ("n", 3, 3, True), 0x02020300: ("n", 3, 3, True),
    0x02030000: ("n", 3, 4, True), 0x02030100: ("n", 3, 4, True),
    0x02030200: ("n", 3, 4, True), 0x02030300: ("n", 3, 4, True),
    0x02060000: ("n", 2, 3, True), 0x02800002: ("n", 2, 2, False),
    0x04000101: ("d", 4, 0, False), 0x04000102: ("t", 3, 0, False),
    0x04000401: ("s", 6, 0, False), 0x04000402: ("s", 6, 0, False),
    # DL/T 645-1997
    0x9010: ("n", 4, 2, False), 0xB611: ("n", 2, 0, False), 0xB621: ("n", 2, 2, False),
    0xB630: ("n", 3, 4, False), 0xC010: ("d", 4, 0, False), 0xC011: ("t", 3, 0, False),
    0xC032: ("s", 6, 0, False),
}
DI_1997 = (0x9010, 0xB611, 0xB621, 0xB630, 0xC010, 0xC011, 0xC032)


def address_bytes(address):
    return bytes.fromhex(address)[::-1]


def make_frame(address, control, data, bad_cs=False):
    """68 A 68 C L DATA+33 CS 16 for an address string; `bad_cs` spoils the checksum."""
    body = bytes([0x68]) + address_bytes(address) + bytes([0x68, control, len(data)])
    body += bytes((b + 0x33) & 0xFF for b in data)
    cs = (sum(body) + (1 if bad_cs else 0)) & 0xFF
    return body + bytes([cs, 0x16])


def bcd(n, nbytes, signed=False):
    neg = n < 0
    raw = bytearray(bytes.fromhex("%0*d" % (2 * nbytes, abs(n)))[::-1])
    if len(raw) != nbytes or (signed and raw[-1] & 0x80):
        raise ValueError("%d does not fit %d bytes" % (n, nbytes))
    if neg:
        raw[-1] |= 0x80
    return bytes(raw)


def encode_value(di, v):
    """Value bytes (without DI, without 0x33) of a DI in FORMATS."""
    kind, nbytes, dec, signed = FORMATS[di]
    if kind == "n":
        return bcd(round(v * 10 ** dec), nbytes, signed)
    if kind == "b":
        return b"".join(bcd(round(x * 10 ** dec), nbytes, signed) for x in v)
    if kind == "d":
        y, m, d = (int(x) for x in v.split("-"))
        weekday = datetime.date(y, m, d).isoweekday() % 7  # 0 = Sunday
        return bcd(weekday, 1) + bcd(d, 1) + bcd(m, 1) + bcd(y % 100, 1)
    if kind == "t":
        h, mi, s = (int(x) for x in v.split(":"))
        return bcd(s, 1) + bcd(mi, 1) + bcd(h, 1)
    return bytes.fromhex(v)[::-1]


def di_text(di):
    return "%04X" % di if di in DI_1997 else "%08X" % di


def parse_frame(buf):
    """(frame, used, bad): frame = (address, control, data) or None; drop `used` bytes; bad: a frame failed CS."""
    i = buf.find(0x68)
    if i < 0:
        return None, len(buf), False
    if len(buf) < i + 10:
        return None, i, False
    if buf[i + 7] != 0x68 or buf[i + 9] > 200:
        return None, i + 1, False
    n = buf[i + 9]
    if len(buf) < i + 12 + n:
        return None, i, False
    if sum(buf[i:i + 10 + n]) & 0xFF != buf[i + 10 + n] or buf[i + 11 + n] != 0x16:
        return None, i + 1, True
    address = bytes(buf[i + 1:i + 7])[::-1].hex().upper()
    data = bytes((b - 0x33) & 0xFF for b in buf[i + 10:i + 10 + n])
    return (address, buf[i + 8], data), i + 12 + n, False


def matches(pattern, address):
    return all(p in "Aa" or p == a for p, a in zip(pattern, address))
