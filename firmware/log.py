"""Logging set-up on top of micropython-logging: one handler, one line per record, to stderr."""

import sys
import time

import logging

_FMT = "%(levelname)s %(name)s: %(message)s"


class _Handler(logging.Handler):
    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self.setFormatter(logging.Formatter(_FMT))

    def emit(self, record):
        t = time.ticks_ms()
        text = self.formatter.format(record)
        for secret in _secrets:
            if secret in text:
                text = text.replace(secret, "***")
        self.stream.write("%d.%03d %s\n" % (t // 1000, t % 1000, text))


_handler = None
_secrets = ()
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def level(name):
    return _LEVELS.get(name, logging.INFO)


def hide(values):
    """Every later log line shows these values (the config's secrets) as *** wherever they appear in it."""
    global _secrets
    _secrets = tuple(v for v in values if isinstance(v, str) and len(v) >= 3)


def get(name, level=logging.INFO):
    """A named logger writing through the firmware's single handler."""
    global _handler
    if _handler is None:
        _handler = _Handler(sys.stderr)
    lg = logging.getLogger(name)
    if not lg.handlers:
        lg.addHandler(_handler)
    lg.setLevel(level)
    return lg
