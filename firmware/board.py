"""Turns a board profile into objects: UARTs, output pins, the watchdog."""

from firmware.boards import BOARDS


class Output:
    """A digital output with its active level; a no-op where the board has none."""

    def __init__(self, spec):
        self._pin = None
        self._active = 1
        if spec:
            from machine import Pin

            self._active = spec.get("active", 1)
            self._pin = Pin(spec["pin"], Pin.OUT, value=1 - self._active)

    def on(self):
        if self._pin is not None:
            self._pin.value(self._active)

    def off(self):
        if self._pin is not None:
            self._pin.value(1 - self._active)

    def __bool__(self):
        return self._pin is not None


def profile(name):
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError("unknown board %r (known: %s)" % (name, ", ".join(sorted(BOARDS))))


def open_uart(board, role, cfg):
    """The UART for `role` ('meter_uart' or 'modem_uart') on this board."""
    if board["uart"] == "tcp":
        from tcpuart import TcpUart

        return TcpUart(cfg[role])
    from machine import UART, Pin

    u = board[role]
    return UART(u["id"], baudrate=u["baud"], bits=u["bits"], parity=u["parity"], stop=u["stop"],
                tx=Pin(u["tx"]), rx=Pin(u["rx"]), rxbuf=u["rxbuf"], timeout=0)


def de_pin(board, role):
    u = board.get(role) if board["uart"] == "machine" else None
    return Output({"pin": u["de"], "active": 1}) if u and u.get("de") is not None else None


class Watchdog:
    """machine.WDT on boards; on the unix port a stand-in that only logs when it would bite."""

    def __init__(self, board, timeout_ms, log):
        self._wdt = None
        self._log = log
        self.timeout_ms = timeout_ms
        if board.get("wdt"):
            from machine import WDT

            self._wdt = WDT(timeout=timeout_ms)

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def would_reset(self, why):
        # On a board the hardware bites by itself once feeding stops.
        if self._wdt is None:
            self._log.error("watchdog would reset the MCU now: %s", why)
