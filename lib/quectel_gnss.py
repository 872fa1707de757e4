"""GNSS (BeiDou/GPS) of a Quectel module through AT: start, NMEA sentences, QGPSLOC fallback."""

from atengine import ATError

_ALREADY_ON = 504
_NOT_ON = 505
_NO_FIX = 516
_NEED_NMEASRC = 507


def parse_loc(line):
    """'+QGPSLOC: hhmmss.sss,lat,lon,hdop,alt,fix,cog,spkm,spkn,ddmmyy,nsat' (mode 2) -> dict, or None."""
    if not line.startswith("+QGPSLOC:"):
        return None
    f = line[9:].strip().split(",")
    if len(f) < 11:
        return None
    try:
        return {"utc": f[0], "lat": float(f[1]), "lon": float(f[2]), "hdop": float(f[3]), "alt": float(f[4]),
                "fix": int(f[5]), "cog": float(f[6] or 0), "spkm": float(f[7] or 0), "spkn": float(f[8] or 0),
                "date": f[9], "nsat": int(f[10])}
    except ValueError:
        return None


async def start(m):
    """Select the constellations (where supported), the NMEA source if this module needed it, and switch the
    receiver on; on already is fine. Both settings are lost when the module restarts."""
    try:
        await m.at.cmd('AT+QGPSCFG="gnssconfig",%d' % m.gnssconfig, m.timeouts["cmd"])
    except ATError:
        m._stats["gnss_cfg_refused"] += 1  # modules without the setting keep their default
    if m._nmeasrc_needed and not m._nmeasrc:
        await m.at.cmd('AT+QGPSCFG="nmeasrc",1', m.timeouts["cmd"])
        m._nmeasrc = True
    try:
        await m.at.cmd("AT+QGPS=1", m.timeouts["cmd"])
    except ATError as e:
        if e.code != _ALREADY_ON:
            raise
    m._gnss_on = True


async def _cmd(m, text):
    """A GNSS query, fixing the two states that refuse it: NMEA source off (507) and receiver off (505)."""
    for _ in range(3):
        try:
            return await m.at.cmd(text, m.timeouts["cmd"])
        except ATError as e:
            if e.code == _NEED_NMEASRC and not m._nmeasrc:
                m._nmeasrc = True
                m._nmeasrc_needed = True
                await m.at.cmd('AT+QGPSCFG="nmeasrc",1', m.timeouts["cmd"])
            elif e.code == _NOT_ON and m._gnss_wanted:
                await start(m)
            else:
                raise
    return await m.at.cmd(text, m.timeouts["cmd"])


async def nmea(m, kinds):
    """Raw NMEA sentences ('$...*hh') for each kind via AT+QGPSGNMEA, in order (GSV gives several)."""
    out = []
    for kind in kinds:
        for line in await _cmd(m, 'AT+QGPSGNMEA="%s"' % kind):
            if line.startswith("+QGPSGNMEA:"):
                s = line[11:].strip()
                if s.startswith("$"):
                    out.append(s)
    return out


async def loc(m):
    """AT+QGPSLOC=2 as a dict (see parse_loc); None while there is no fix (516)."""
    try:
        lines = await _cmd(m, "AT+QGPSLOC=2")
    except ATError as e:
        if e.code == _NO_FIX:
            return None
        raise
    for line in lines:
        got = parse_loc(line)
        if got is not None:
            return got
    return None
