"""AT response lines without I/O: the error classes, final results, response prefixes, URC prefixes.

Pure and portable (CPython and MicroPython): the engine (atengine) uses these
to classify each line it reads, and the fuzzers and unit tests use them alone.
"""

# Lines that are unsolicited whenever no command owns their prefix.
URC_PREFIXES = ("+QIURC:", "+QIOPEN:", "RDY", "+CFUN:", "+CPIN:", "+QIND:", "+QGPSURC:", "POWERED DOWN",
                "NORMAL POWER DOWN", "+QUSIM:", "+CEREG:", "+CGREG:", "+CREG:", "+QSSLURC:", "+CGEV:",
                "+CIPRXGET:", "+IPCLOSE:", "+CGNSSPWR:", "+NETOPEN:", "+CIPOPEN:", "+CTZV:", "+QNTP:")


class ATEngineError(Exception):
    """Base of the engine's errors."""


class ATError(ATEngineError):
    """The module answered ERROR, +CME ERROR: n, +CMS ERROR: n or SEND FAIL."""

    def __init__(self, code, lines, final="ERROR"):
        super().__init__("%s (code %s)" % (final, code))
        self.code = code
        self.lines = lines
        self.final = final


class ATTimeout(ATEngineError):
    """No final result (or awaited URC, or prompt) within the command's time limit."""


class ATReboot(ATEngineError):
    """The module announced RDY (it restarted) while a command was in flight."""


def response_prefix(text):
    """'AT+CSQ' -> '+CSQ:', 'AT+QGPSGNMEA="RMC"' -> '+QGPSGNMEA:'; None for commands without one."""
    if not text.startswith("AT+") and not text.startswith("at+"):
        return None
    end = len(text)
    for ch in "=?":
        i = text.find(ch, 3)
        if 0 <= i < end:
            end = i
    return text[2:end].upper() + ":"


def final_kind(text):
    """The final-result kind of a line: 'OK', 'SEND OK', 'ERROR', 'SEND FAIL', '+CME ERROR', '+CMS ERROR' or None."""
    if text == "OK" or text == "SEND OK" or text == "ERROR" or text == "SEND FAIL":
        return text
    if text.startswith("+CME ERROR:"):
        return "+CME ERROR"
    if text.startswith("+CMS ERROR:"):
        return "+CMS ERROR"
    return None


def error_code(text):
    """The number in '+CME ERROR: 14' (None when absent or textual)."""
    _, sep, rest = text.partition(":")
    if sep:
        try:
            return int(rest)
        except ValueError:
            pass
    return None


def printable(line):
    """A line that is not valid UTF-8 (the slow path): its printable ASCII as str, and how many bytes went."""
    kept = bytes(c for c in line if 32 <= c < 127)
    return kept.decode(), len(line) - len(kept)
