"""The config that last reached the server, and the fall-back to it after a long silence without server contact.

A valid config can still be wrong (a mistyped broker host): the terminal then
never reaches the server and nobody can fix it remotely. So the config in use
when the server last acknowledged the terminal (CONNACK and a PUBACK) is kept
beside the config file as the "known good" copy; after `config_fallback_s`
without any server contact (counted across resets) the terminal restarts on
that copy. It falls back at most once per config file: on the known good copy
it waits, however long, and a new file (a deploy, a `config.set`) gets its
own full chance. So it never loops between configs.
"""

from firmware import config

KNOWN = ".known"  # beside the config file: the overrides in use when the server last acknowledged the terminal
STATE = ".fallback"  # beside it too: {"silent_s": seconds without contact, "for": the config they were counted for,
#                     "from": the file's overrides the terminal fell back from, or null}
_SAVE_EVERY_S = 600  # the silence is written to flash at most this often, so resets do not restart its count


def _read(path):
    try:
        doc = config.read(path)
    except (OSError, ValueError, RuntimeError, MemoryError):
        return None
    return doc if isinstance(doc, dict) else None


class KnownGood:
    def __init__(self, cfg_path, log=None):
        self.path = cfg_path
        self.log = log
        self.known = _read(cfg_path + KNOWN)
        if self.known is not None:
            self.known = config.overrides_of(config.resolve(self.known)[0])  # only valid keys
        st = _read(cfg_path + STATE) or {}
        silent = st.get("silent_s")
        self.silent0 = silent if isinstance(silent, int) and not isinstance(silent, bool) and silent > 0 else 0
        self.left = st.get("from") if isinstance(st.get("from"), dict) else None
        self._for = st.get("for")
        self.running = None
        self.using_known = False
        self._contact_at = 0
        self._saved = self.silent0

    def choose(self, cfg, source):
        """(cfg, source) to run: the known good copy after a fall-back from this very file, else what was loaded."""
        if self.left is not None and self.known is not None and config.overrides_of(cfg) == self.left:
            self.using_known = True
            if self.log:
                self.log.warning("config: running on the known good copy %s%s (the file never reached the server)",
                                 self.path, KNOWN)
            cfg, source = config.resolve(self.known)[0], "known good"
        else:
            self.left = None  # no fall-back, or the file changed since: it gets its own chance
        self.running = config.overrides_of(cfg)
        if self._for != self.running:  # the silence so far was another config's
            self.silent0 = 0
            self._write(0)
        return cfg, source

    def reached(self, cfg):
        """The server acknowledged the terminal running `cfg`: keep it as the known good copy."""
        ov = config.overrides_of(cfg)
        if ov != self.known:
            try:
                config.save(self.path + KNOWN, ov)
                self.known = ov
            except OSError as e:
                if self.log:
                    self.log.warning("cannot keep the known good config: %s", e)

    def tick(self, now_s, contact, cfg):
        """Each second: `contact` says the server is reachable now. The silence (s) when it is time to fall back."""
        if contact:
            self._contact_at = now_s
            self.silent0 = 0
            if self._saved:
                self._write(0)
            return None
        silent = self.silent0 + now_s - self._contact_at
        if silent - self._saved >= _SAVE_EVERY_S:
            self._write(silent)
        limit = cfg["config_fallback_s"]
        if not limit or silent < limit or self.using_known or self.known is None:
            return None
        if self.known == config.overrides_of(cfg):
            return None  # already the config that last worked: nothing better to go back to
        return silent

    def fall_back(self, cfg):
        """Note that the file behind `cfg` is left for the known good copy (the caller then resets)."""
        self.left = config.overrides_of(cfg)
        self._write(0)

    def _write(self, silent):
        self._saved = silent  # also when the write fails: try again only after another _SAVE_EVERY_S
        self._for = self.running
        try:
            config.save(self.path + STATE, {"silent_s": silent, "for": self.running, "from": self.left})
        except OSError as e:
            if self.log:
                self.log.warning("cannot save the config fall-back state: %s", e)
