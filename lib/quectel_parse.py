"""Parsers of Quectel AT answers (signal, registration, network time, IMEI, ICCID): pure, no I/O."""


def parse_csq(lines):
    """'+CSQ: 23,99' -> 23; None for 99 (unknown) or no answer."""
    for line in lines:
        if line.startswith("+CSQ:"):
            try:
                rssi = int(line[5:].split(",")[0])
            except ValueError:
                return None
            return None if rssi == 99 else rssi
    return None


def parse_cereg(lines):
    """'+CEREG: 0,1' -> 1 (the registration stat); None if absent."""
    for line in lines:
        if line.startswith("+CEREG:"):
            f = line[7:].split(",")
            try:
                return int(f[1] if len(f) > 1 else f[0])
            except ValueError:
                return None
    return None


def parse_qlts(lines):
    """'+QLTS: "2026/09/11,14:22:25+32,0"' -> (2026, 9, 11, 14, 22, 25) UTC; None if empty or malformed."""
    for line in lines:
        if line.startswith("+QLTS:"):
            body = line[6:].strip().strip('"')
            try:
                date, _, clock = body.partition(",")
                y, mo, d = (int(x) for x in date.split("/"))
                h, mi, s = (int(x) for x in clock[:8].split(":"))
            except ValueError:
                return None
            if y < 2000 or not 1 <= mo <= 12 or not 1 <= d <= 31:
                return None
            return (y, mo, d, h, mi, s)
    return None


def parse_imei(lines):
    for line in lines:
        t = line[6:].strip() if line.startswith("+CGSN:") else line
        if len(t) >= 14 and t.isdigit():
            return t
    return None


def parse_iccid(lines):
    for line in lines:
        if line.startswith("+QCCID:"):
            return line[7:].strip()
    return None
