"""Files on a Quectel module's own file system (QFLST, QFUPL, QFDEL): make sure a file there holds given bytes.

TLS certificates and keys live on the module (AT+QSSLCFG names them). The
module can list a file's size but not return a digest of it, so `ensure` takes
the digest (SHA-256) the caller recorded when it last uploaded the file to this
module (`known`): a file is uploaded when it is missing, its size differs, or
nothing says its content is the same. The module's own checksum cannot serve
for that: an XOR of 16-bit words misses every change that flips the same bits
in an even number of words (a lower-case word made upper-case twice). Each
upload is checked against the module's answer `+QFUPL: <size>,<checksum>`.
File contents never appear in a log line or an error text.
"""

from binascii import hexlify

from atengine import ATError
from quectel_socket import ModemError

_NO_FILE = 405


class FileError(ModemError):
    """The module refused a file or damaged it on the way (the module's code, if any, in `code`)."""

_UART_BYTES_PER_S = 5000  # a bound on the upload's time: at least 5 KB/s on a 115200-baud UART


def checksum(data):
    """The module's upload checksum: XOR of 16-bit big-endian words, an odd last byte paired with 0x00."""
    x = 0
    n = len(data)
    for i in range(0, n - 1, 2):
        x ^= (data[i] << 8) | data[i + 1]
    if n & 1:
        x ^= data[n - 1] << 8
    return x


def digest(data):
    """SHA-256 of the content in hex (size and module checksum where a port has no hashlib)."""
    try:
        import hashlib
    except ImportError:
        return "%d-%x" % (len(data), checksum(data))
    return hexlify(hashlib.sha256(data).digest()).decode()


def parse_qflst(lines):
    """['+QFLST: "UFS:ca.pem",1188'] -> {"ca.pem": 1188} (storage prefix UFS: dropped, RAM: kept)."""
    out = {}
    for line in lines:
        if not line.startswith("+QFLST:"):
            continue
        name, _, size = line[7:].strip().rpartition(",")
        name = name.strip('"')
        if name.startswith("UFS:"):
            name = name[4:]
        try:
            out[name] = int(size)
        except ValueError:
            pass
    return out


def parse_qfupl(lines):
    """['+QFUPL: 1188,2d13'] -> (1188, 0x2d13); None when absent or malformed."""
    for line in lines:
        if line.startswith("+QFUPL:"):
            size, _, cks = line[7:].strip().partition(",")
            try:
                return int(size), int(cks, 16)
            except ValueError:
                return None
    return None


async def sizes(m, pattern="*"):
    """{name: size} of the module's files matching pattern."""
    try:
        return parse_qflst(await m.at.cmd('AT+QFLST="%s"' % pattern, m.timeouts["cmd"]))
    except ATError as e:
        if e.code == _NO_FILE:
            return {}
        raise


async def delete(m, name):
    """Delete a module file; True if it was there."""
    try:
        await m.at.cmd('AT+QFDEL="%s"' % name, m.timeouts["cmd"])
        return True
    except ATError as e:
        if e.code == _NO_FILE:
            return False
        raise


async def upload(m, name, data):
    """Write `data` to a new module file `name` (AT+QFUPL) and check the module's size and checksum."""
    limit = m.timeouts["cmd"] + len(data) * 1000 // _UART_BYTES_PER_S
    try:
        lines = await m.at.cmd('AT+QFUPL="%s",%d,%d' % (name, len(data), limit // 1000 + 1), limit, payload=data)
    except ATError as e:
        raise FileError("module file %s: upload refused (%s)" % (name, e), e.code)
    got = parse_qfupl(lines)
    want = (len(data), checksum(data))
    if got != want:
        await delete(m, name)  # a damaged copy must not be taken for the right one later
        raise FileError("module file %s: upload damaged (module has %s bytes, checksum %s; sent %d, %x)"
                         % (name, got and got[0], got and "%x" % got[1], want[0], want[1]))
    return want[1]


async def ensure(m, name, data, known=None):
    """Make the module file `name` hold `data`; returns (digest(data), whether it was uploaded).

    known: the digest recorded for `name` on this module after its last upload (None: nothing known).
    """
    await m._ensure()  # one owner: wait for a bring-up in progress, re-initialise after a restart
    want = digest(data)
    have = (await sizes(m, name)).get(name)
    if have == len(data) and known == want:
        return want, False
    if have is not None:
        await delete(m, name)
    await upload(m, name, data)
    return want, True
