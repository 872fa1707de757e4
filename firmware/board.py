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


class CtlPin:
    """A module input on the unix port: each level change is one JSON line to the modem simulator's control port.

    Loopback only, and every step is bounded by a short socket timeout, so a missing simulator costs at most
    _CTL_TIMEOUT_S, never a hang. A level change that did not arrive shows where a real pin's would: the
    module does not come back, and the ladder logs and counts the failed power rung.
    """

    _CTL_TIMEOUT_S = 0.5

    def __init__(self, endpoint, name):
        from tcpuart import parse_endpoint

        self.addr = parse_endpoint(endpoint)
        self.name = name

    def _set(self, on):
        import socket

        s = socket.socket()
        try:
            s.settimeout(self._CTL_TIMEOUT_S)
            s.connect(socket.getaddrinfo(self.addr[0], self.addr[1])[0][-1])
            s.write(('{"pin": "%s", "on": %s}\n' % (self.name, "true" if on else "false")).encode())
            s.readline()  # the answer: the level is applied before the pulse is timed
        except OSError:
            pass
        finally:
            s.close()

    def on(self):
        self._set(True)

    def off(self):
        self._set(False)

    def __bool__(self):
        return True


def output(board, name, cfg):
    """The board's `name` output ('pwrkey', 'reset', 'led'): a pin, a simulated module input, or a no-op."""
    spec = board.get(name)
    if spec and "ctl" in spec:
        return CtlPin(cfg["modem_ctl"], spec["ctl"]) if cfg.get("modem_ctl") else Output(None)
    return Output(spec)


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
