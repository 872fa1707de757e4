"""The modem simulator's faults and input pins: what tests and the control port switch at run time.

`peer_close`, `pdpdeact`, `send_fail`, `hang`, `reboot`, `garbage`,
`urc_mid_response`, `antenna`, `stack_degraded`, `gnss_time` (docs/MODEM.md);
the `reset` and `pwrkey` inputs behave as the module's pins.
"""

FAULTS = ("peer_close", "pdpdeact", "send_fail", "hang", "reboot", "garbage", "urc_mid_response", "antenna",
          "stack_degraded", "gnss_time")


class FaultsMixin:
    """_apply_fault and _apply_pin for ModemSim (called in its loop thread)."""

    def _apply_fault(self, name, on=True, **params):
        if name not in FAULTS:
            raise ValueError("unknown fault %r (have %s)" % (name, ", ".join(FAULTS)))
        if not on:
            self.faults.pop(name, None)
            return
        if name == "peer_close":
            for s in list(self.sockets.values()):
                if params.get("id") in (None, s.id):
                    self._peer_closed(s)
        elif name == "pdpdeact":
            self.pdp = "broken"
            self._drop_sockets(urc=False)
            self._urc('+QIURC: "pdpdeact",1')
        elif name == "send_fail":
            self.faults[name] = int(params.get("n", 1))
        elif name == "hang":
            s = params.get("seconds")
            self.faults[name] = True if s is None else self._now() + float(s)
        elif name == "reboot":
            self._reboot()
        elif name == "garbage":
            n = int(params.get("n", 32))
            junk = bytes(self.rng.choice((self.rng.randint(0x80, 0xFF), self.rng.randint(0, 8))) for _ in range(n))
            self.stats["garbage_bytes"] += n
            self._out(junk + b"\r\n")
        elif name == "urc_mid_response":
            self.faults[name] = int(params.get("n", 1)) if params.get("n", 1) is not None else True
        elif name == "antenna":
            self.faults[name] = True
        elif name == "gnss_time":  # a receiver with a wrong clock (a bad almanac, a GPS week rollover)
            self.faults[name] = float(params.get("offset_s", 3 * 3600))
        elif name == "stack_degraded":
            self.faults[name] = True
            self._cfun0 = False
            if params.get("drop", True):
                for s in list(self.sockets.values()):
                    self._peer_closed(s)

    def _apply_pin(self, name, on):
        if name not in self._pins:
            raise ValueError("unknown pin %r" % name)
        was = self._pins[name]
        self._pins[name] = bool(on)
        if name == "reset":
            if on and not was:
                self._power_down(urc=False)  # held in reset: silent
            elif was and not on:
                self._reboot()
        elif was and not on:  # a PWRKEY pulse toggles power
            if self.powered:
                self._power_down()
            else:
                self._reboot()
