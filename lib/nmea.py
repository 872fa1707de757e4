"""NMEA 0183 sentence parser for GNSS receivers (BeiDou and others): RMC, GGA, GSA, GSV, GLL, VTG.

`parse(line)` takes one sentence as str or bytes (surrounding whitespace and
CR/LF are ignored), verifies its `*hh` checksum and returns a `Sentence`. Any
talker is accepted (GN, GP, BD, GB, GL, GA, GQ, or any other two capital
letters); NMEA 4.1 additions (RMC navigational status, GSA system id, GSV
signal id) are read when present. Attributes a sentence does not carry read
as None. Every problem raises a subclass of `NMEAError` and nothing else:
`ChecksumError`, `FormatError`, or `UnsupportedError` for well-formed
sentences of other kinds (ZDA, TXT, proprietary $P...), which callers skip.

Whether a fix is good enough to use is policy and lives with the caller.
"""

from mpcompat import const

_MAX_LEN = const(82)  # NMEA's limit; measured here without the CR/LF the receiver adds


class NMEAError(Exception):
    pass


class ChecksumError(NMEAError):
    pass


class FormatError(NMEAError):
    pass


class UnsupportedError(NMEAError):
    pass


class Sentence:
    """One parsed sentence; fields its kind does not carry keep the class default None."""

    talker = None  # "GN", "BD", "GB", ...
    kind = None  # "RMC", "GGA", "GSA", "GSV", "GLL", "VTG"
    lat = None  # signed decimal degrees, south negative
    lon = None  # signed decimal degrees, west negative
    fix = None  # bool: RMC/GLL status A, GGA quality > 0, GSA mode >= 2
    utc = None  # (hour, minute, seconds as float)
    date = None  # (year, month, day)
    status = None  # RMC/GLL "A" valid, "V" void
    faa_mode = None  # RMC/GLL/VTG mode indicator letter (A, D, E, N, ...)
    nav_status = None  # RMC NMEA 4.1 navigational status letter
    speed_knots = None
    speed_kmh = None  # VTG
    course = None  # degrees true
    mag_var = None  # RMC magnetic variation, degrees, west negative
    quality = None  # GGA fix quality
    nsat = None  # GGA satellites used
    hdop = None
    alt = None  # GGA altitude above mean sea level, metres
    geoid_sep = None  # GGA geoid separation, metres
    op_mode = None  # GSA "A" automatic, "M" manual 2D/3D selection
    mode = None  # GSA 1 no fix, 2 2D, 3 3D
    prns = None  # GSA satellites used in the solution
    pdop = None
    vdop = None
    system_id = None  # GSA NMEA 4.1 GNSS system id (1 GPS, 2 GLONASS, 3 Galileo, 4 BeiDou, 5 QZSS)
    msg_total = None  # GSV messages in this cycle
    msg_num = None  # GSV number of this message
    in_view = None  # GSV satellites in view
    satellites = None  # GSV [(prn, elevation, azimuth, snr)], None for empty values
    signal_id = None  # GSV NMEA 4.1 signal id

    def __init__(self, talker, kind):
        self.talker = talker
        self.kind = kind

    def __repr__(self):
        return "<Sentence %s%s lat=%s lon=%s fix=%s>" % (self.talker, self.kind, self.lat, self.lon, self.fix)


def checksum(body):
    """XOR of the characters of `body` (the text between '$' and '*')."""
    x = 0
    for c in body:
        x ^= ord(c)
    return x


def frame(body):
    """The full sentence '$body*HH' for `body` (used by simulators and tests)."""
    return "$%s*%02X" % (body, checksum(body))


def parse(line):
    """Parse one sentence (str or bytes); return a Sentence or raise an NMEAError subclass."""
    if isinstance(line, str):
        text = True
        dollar, asterisk = "$", "*"
    elif isinstance(line, (bytes, bytearray)):
        text = False
        dollar, asterisk = b"$", b"*"
    else:
        raise FormatError("not str or bytes")
    s = line.strip()
    n = len(s)
    if n > _MAX_LEN:
        raise FormatError("longer than 82 characters")
    if n < 4:
        raise FormatError("too short")
    # One-character slices compare the same way for str and bytes (indexing bytes gives ints).
    if s[:1] != dollar:
        raise FormatError("no '$'")
    star = n - 3
    if s[star : star + 1] != asterisk:
        raise FormatError("no '*hh' checksum")
    # One pass over the whole line's bytes computes the checksum (iterating bytes is several times faster than
    # iterating a str on MicroPython); OR-ing every byte shows any non-ASCII one, rejected before decoding.
    if text:
        try:
            b = s.encode()
        except UnicodeError:  # CPython: lone surrogates
            raise FormatError("non-ASCII character")
    else:
        b = s
    x = seen = 0
    for c in b:
        x ^= c
        seen |= c
    if seen > 127:
        raise FormatError("non-ASCII character")
    if not text:
        s = s.decode()
    hh = s[star + 1 :]
    if hh[0] not in "0123456789ABCDEFabcdef" or hh[1] not in "0123456789ABCDEFabcdef":
        raise FormatError("checksum is not two hex digits")
    if s.find("*") != star or s.find("$", 1) >= 0:
        raise FormatError("reserved character in sentence")
    x ^= 0x0E ^ ord(hh[0]) ^ ord(hh[1])  # the pass included "$" (0x24), "*" (0x2A) and the two digits
    if int(hh, 16) != x:
        raise ChecksumError("checksum mismatch")
    f = s.split(",")
    f[-1] = f[-1][:-3]  # the last field carries "*hh"
    addr = f[0][1:]
    if addr[:1] == "P":
        raise UnsupportedError("proprietary sentence")
    if len(addr) != 5 or not addr.isalpha() or not addr.isupper():
        raise FormatError("bad address field")
    kind = addr[2:]
    out = Sentence(addr[:2], kind)
    try:
        if kind == "GGA":
            _gga(out, f)
        elif kind == "RMC":
            _rmc(out, f)
        elif kind == "GSA":
            _gsa(out, f)
        elif kind == "GSV":
            _gsv(out, f)
        elif kind == "GLL":
            _gll(out, f)
        elif kind == "VTG":
            _vtg(out, f)
        else:
            raise UnsupportedError("unsupported sentence kind")
    except (ValueError, IndexError):  # int()/float() on a malformed field, or too few fields
        raise FormatError("malformed field in " + kind)
    return out


def _gga(out, f):
    # GGA,time,lat,N,lon,E,quality,nsat,hdop,alt,M,geoid,M,dgps age,dgps station
    if len(f) < 10:
        raise FormatError("GGA: too few fields")
    out.utc = _utc(f[1])
    out.lat = _coord(f[2], f[3], "N", "S", 90)
    out.lon = _coord(f[4], f[5], "E", "W", 180)
    q = _uint(f[6])
    out.quality = q
    out.fix = q is not None and q > 0
    out.nsat = _uint(f[7])
    out.hdop = _float(f[8])
    out.alt = _float(f[9])
    if len(f) > 11:
        out.geoid_sep = _float(f[11])


def _rmc(out, f):
    # RMC,time,status,lat,N,lon,E,speed kn,course,date,magvar,E/W[,mode[,nav status]]
    if len(f) < 10:
        raise FormatError("RMC: too few fields")
    out.utc = _utc(f[1])
    st = f[2]
    if st not in ("A", "V", ""):
        raise FormatError("RMC: bad status")
    out.status = st
    out.fix = st == "A"
    out.lat = _coord(f[3], f[4], "N", "S", 90)
    out.lon = _coord(f[5], f[6], "E", "W", 180)
    out.speed_knots = _float(f[7])
    out.course = _float(f[8])
    out.date = _date(f[9])
    if len(f) > 11:
        v = _float(f[10])
        if v is not None:
            h = f[11]
            if h == "W":
                v = -v
            elif h != "E":
                raise FormatError("RMC: bad variation direction")
        out.mag_var = v
    if len(f) > 12:
        out.faa_mode = f[12] or None
    if len(f) > 13:
        out.nav_status = f[13] or None


def _gsa(out, f):
    # GSA,op mode,fix mode,12 x prn,pdop,hdop,vdop[,system id]
    n = len(f)
    if n != 18 and n != 19:
        raise FormatError("GSA: wrong number of fields")
    op = f[1]
    if op not in ("A", "M", ""):
        raise FormatError("GSA: bad selection mode")
    out.op_mode = op or None
    m = _uint(f[2])
    if m is not None and (m < 1 or m > 3):
        raise FormatError("GSA: bad fix mode")
    out.mode = m
    out.fix = m is not None and m >= 2
    prns = []
    for i in range(3, 15):
        if f[i]:
            prns.append(_uint(f[i]))
    out.prns = prns
    out.pdop = _float(f[15])
    out.hdop = _float(f[16])
    out.vdop = _float(f[17])
    if n == 19:
        out.system_id = _hex(f[18])


def _gsv(out, f):
    # GSV,total,num,in view,{prn,elev,az,snr} x 0..4[,signal id]
    n = len(f)
    extra = (n - 4) % 4
    if n < 4 or extra > 1:
        raise FormatError("GSV: wrong number of fields")
    total = _uint(f[1])
    num = _uint(f[2])
    if total is None or num is None or num < 1 or num > total:
        raise FormatError("GSV: bad message numbers")
    out.msg_total = total
    out.msg_num = num
    out.in_view = _uint(f[3])
    end = n - extra
    sats = []
    for i in range(4, end, 4):
        prn = f[i]
        if prn:  # receivers pad the last message with empty groups
            e = f[i + 1]
            sats.append((_uint(prn), int(e) if e else None, _uint(f[i + 2]), _uint(f[i + 3])))
    out.satellites = sats
    if extra:
        out.signal_id = _hex(f[end])


def _gll(out, f):
    # GLL,lat,N,lon,E[,time,status[,mode]]
    n = len(f)
    if n < 5:
        raise FormatError("GLL: too few fields")
    out.lat = _coord(f[1], f[2], "N", "S", 90)
    out.lon = _coord(f[3], f[4], "E", "W", 180)
    if n > 5:
        out.utc = _utc(f[5])
    if n > 6:
        st = f[6]
        if st not in ("A", "V", ""):
            raise FormatError("GLL: bad status")
        out.status = st
        out.fix = st == "A"
    if n > 7:
        out.faa_mode = f[7] or None


def _vtg(out, f):
    # VTG,course,T,course magnetic,M,speed,N,speed,K[,mode]
    if len(f) < 9:
        raise FormatError("VTG: too few fields")
    if f[2] not in ("T", "") or f[6] not in ("N", ""):
        raise FormatError("VTG: unit letters missing")
    out.course = _float(f[1])
    out.speed_knots = _float(f[5])
    out.speed_kmh = _float(f[7])
    if len(f) > 9:
        out.faa_mode = f[9] or None


def _uint(v):
    if not v:
        return None
    if not v.isdigit():
        raise FormatError("not an unsigned integer")
    return int(v)


def _hex(v):
    if not v:
        return None
    if len(v) != 1 or v not in "0123456789ABCDEF":
        raise FormatError("not a hex digit")
    return int(v, 16)


def _float(v):
    if not v:
        return None
    x = float(v)
    if x - x:  # nan or inf: x - x is nan, which is true
        raise FormatError("not a finite number")
    return x


def _coord(v, hemi, pos, neg, limit):
    # (d)ddmm.mmmm: the two digits before the point and the fraction are minutes.
    if not v:
        return None
    dot = v.find(".")
    if dot < 0:
        dot = len(v)
    deg = v[: dot - 2] if dot > 2 else ""
    if not deg.isdigit():
        raise FormatError("bad coordinate")
    minutes = float(v[dot - 2 :])
    if not 0 <= minutes < 60:
        raise FormatError("bad coordinate minutes")
    x = int(deg) + minutes / 60
    if x > limit:
        raise FormatError("coordinate out of range")
    if hemi == neg:
        return -x
    if hemi != pos:
        raise FormatError("bad hemisphere")
    return x


def _utc(v):
    # hhmmss[.sss]; whole seconds come from the integer so only the fraction goes through float()
    if not v:
        return None
    hms = v[:6]
    if len(hms) < 6 or not hms.isdigit():
        raise FormatError("bad time")
    hms = int(hms)
    h = hms // 10000
    m = hms // 100 % 100
    s = float(hms % 100)
    if len(v) > 6:
        if v[6] != ".":
            raise FormatError("bad time")
        s += float(v[6:]) if len(v) > 7 else 0.0
    if h > 23 or m > 59 or not s < 61:  # 60.x is a leap second
        raise FormatError("bad time")
    return (h, m, s)


def _date(v):
    # ddmmyy, years 2000..2099
    if not v:
        return None
    if len(v) != 6 or not v.isdigit():
        raise FormatError("bad date")
    x = int(v)
    d = x // 10000
    m = x // 100 % 100
    if d < 1 or d > 31 or m < 1 or m > 12:
        raise FormatError("bad date")
    return (2000 + x % 100, m, d)
