"""What each meter can answer (refused DIs, hence phases and block reads), learned on contact and kept on flash.

A meter that lacks an item answers it with an abnormal reply carrying ERR "no such data" (a
single-phase meter for phases B and C, many meters for the block DI). Asking again every poll
costs bus time and, counted as errors, turns every heartbeat into the full form. So each meter's
refusals are learned once ("probe": every DI is asked), kept in `<state_dir>/meter_caps.json`
(written atomically) and skipped afterwards. A probe is repeated daily and after the meter comes
back online (it may have been swapped); a refusal already known is expected then, not an error.

File: {"000072007201": {"ts": 1795430400, "refused": ["02010200", "02020200"], "phases": 1}}
(`ts` the clock when the last probe finished; `phases` 1 or 3 once a phase-B item was asked).
"""

import json
import os

_FILE = "/meter_caps.json"
REPROBE_S = 86400  # a day
PHASE_B_DIS = (0x02010200, 0x02020200)  # voltage / current phase B: a single-phase meter refuses them
_MAX_METERS = 32  # a file with more is not ours: ignore the rest


class MeterCaps:
    """The capabilities of every meter seen, learned from its refusals and persisted."""

    def __init__(self, state_dir, log=None, reprobe_s=REPROBE_S):
        self.path = state_dir + _FILE
        self.log = log
        self.reprobe_s = reprobe_s
        self._caps = {}  # address -> {"ts": probe time or None, "refused": set of DIs, "phases": 1, 3 or None}
        self._due = set()  # addresses whose next read is a probe (meter back online)
        self._probing = set()
        self._dirty = False
        self.saves = 0
        self.load()

    # -- queries -------------------------------------------------------------
    def refuses(self, address, di):
        """True when `address` is known to answer `di` with "no such data"."""
        c = self._caps.get(address)
        return c is not None and di in c["refused"]

    def skip(self, address, di):
        """True when a read of `di` is not worth asking: a known refusal and no probe under way."""
        return address not in self._probing and self.refuses(address, di)

    def phases(self, address):
        """1 or 3 once learned, else None."""
        c = self._caps.get(address)
        return c["phases"] if c else None

    def probing(self, address):
        return address in self._probing

    def refused(self, address):
        """The DIs `address` is known to refuse, sorted."""
        c = self._caps.get(address)
        return sorted(c["refused"]) if c else []

    # -- the read cycle ------------------------------------------------------
    def begin(self, address, now):
        """Start a read of `address` at clock `now`; True when this read is a probe (asks every DI)."""
        c = self._caps.get(address)
        if c is None or c["ts"] is None or address in self._due or now - c["ts"] >= self.reprobe_s:
            self._probing.add(address)
            return True
        if now < c["ts"]:
            c["ts"] = now  # the clock restarted from another base (no time yet after a reset): a day from now
        return False

    def learn(self, address, di, refused):
        """Record whether `address` refused (True) or answered (False) `di`."""
        c = self._caps.get(address)
        if c is None:
            c = self._caps[address] = {"ts": None, "refused": set(), "phases": None}
        if refused != (di in c["refused"]):
            if refused:
                c["refused"].add(di)
            else:
                c["refused"].discard(di)
            self._dirty = True
        if di in PHASE_B_DIS:
            phases = 1 if refused else 3
            if c["phases"] != phases:
                c["phases"] = phases
                self._dirty = True

    def note(self, address, di, refused):
        """Learn a refusal (or an answer) of a DI read outside the polling cycle, and keep it on flash if new."""
        self.learn(address, di, refused)
        if self._dirty and address not in self._probing:
            self.save()

    def end(self, address, now, ok):
        """Finish a read: a complete probe (`ok`) is dated `now`; anything new is written to flash."""
        if address in self._probing:
            self._probing.discard(address)
            if ok:
                c = self._caps.get(address)
                if c is None:
                    c = self._caps[address] = {"ts": None, "refused": set(), "phases": None}
                c["ts"] = now
                self._due.discard(address)
                self._dirty = True
        if self._dirty:
            self.save()

    def reprobe(self, address):
        """Probe `address` at its next read (it came back online: it may be another meter now)."""
        self._due.add(address)

    # -- flash ---------------------------------------------------------------
    def load(self):
        """Read the file; a missing, unreadable or malformed one leaves the meters to be probed again."""
        try:
            with open(self.path) as f:
                data = json.load(f)
        except OSError:
            return  # never written: every meter is probed on first contact
        except ValueError as e:
            self._warn("meter capabilities unreadable (%s); probing again" % e)
            return
        if not isinstance(data, dict):
            self._warn("meter capabilities malformed; probing again")
            return
        for address, c in data.items():
            if len(self._caps) >= _MAX_METERS:
                break
            try:
                ts = c["ts"]
                refused = set(int(d, 16) for d in c["refused"])
                phases = c.get("phases")
                if not isinstance(ts, int) or phases not in (None, 1, 3):
                    raise ValueError("bad value")
            except (KeyError, TypeError, ValueError, AttributeError):
                self._warn("meter capabilities of %s malformed; probing it again" % address)
                continue
            self._caps[address] = {"ts": ts, "refused": refused, "phases": phases}

    def save(self):
        """Write every meter's capabilities atomically (temp file, then rename)."""
        data = {}
        for address, c in self._caps.items():
            if c["ts"] is None:
                continue  # never fully probed: nothing settled to keep
            item = {"ts": c["ts"], "refused": ["%08X" % d for d in sorted(c["refused"])]}
            if c["phases"]:
                item["phases"] = c["phases"]
            data[address] = item
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.rename(tmp, self.path)
        except OSError as e:
            self._warn("meter capabilities not saved: %s" % e)
            return
        self._dirty = False
        self.saves += 1

    def _warn(self, text):
        if self.log:
            self.log.warning("%s", text)
