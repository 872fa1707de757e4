"""TLS to the broker through the modem: certificate files on the module, its SSL context, and its clock.

Before every TLS connection: the CA (and, for mutual TLS, the client certificate
and key) are made present on the module from the terminal's flash, uploaded
only when missing or changed (what was uploaded to which module, by IMEI, is
recorded in the state directory by SHA-256); the SSL context is handed to the driver,
which applies it again after every module restart; and when the certificate
is verified the module's clock is set from the terminal's trusted time (GNSS or
network only), since the module checks the certificate's dates against it.
Nothing here logs a file's content.
"""

import json

import quectel_files
import quectel_ssl
from atengine import ATError
from quectel_socket import ModemError

from firmware.clock import civil
from firmware.config import save

_RECORD = "/tls_files.json"
# config key, the SSL context's item naming the module file
_FILES = (("tls_ca", "cacert"), ("tls_cert", "clientcert"), ("tls_key", "clientkey"))
_TRUSTED = ("gnss", "net")


class TlsSetupError(ModemError):
    """TLS cannot be set up on this side (a missing file, a half-configured client certificate, no trusted time):
    nothing the module or the network could fix; retried with the server back-off."""


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class TlsSetup:
    def __init__(self, modem, cfg, clock, log, emit_event):
        self.modem = modem
        self.cfg = cfg
        self.clock = clock
        self.log = log
        self.emit_event = emit_event
        self.record_path = cfg["state_dir"] + _RECORD

    def settings(self):
        """The SSL context for the current config (quectel_ssl.settings); TlsSetupError when it is incomplete."""
        cfg = self.cfg
        mutual = bool(cfg["tls_cert"] or cfg["tls_key"])
        try:
            return quectel_ssl.settings(cacert="ca.pem" if cfg["tls_verify"] else "",
                                        clientcert="client.pem" if cfg["tls_cert"] else "",
                                        clientkey="client.key" if cfg["tls_key"] else "",
                                        verify=cfg["tls_verify"], verify_time=True, sni=cfg["tls_sni"])
        except ValueError as e:
            raise TlsSetupError("TLS config (tls_cert %s, tls_key %s): %s"
                                % ("set" if cfg["tls_cert"] else "empty", "set" if cfg["tls_key"] else "empty",
                                   e if mutual else "tls_ca is needed to verify the broker"))

    def _record(self):
        try:
            rec = json.loads(_read(self.record_path))
        except (OSError, ValueError):
            return {}
        if not isinstance(rec, dict) or rec.get("imei") != self.modem.imei or not isinstance(rec.get("files"), dict):
            return {}  # another module (or none recorded): nothing is known about its files
        return rec["files"]

    async def _files(self, s):
        known = self._record()
        uploaded = []
        for key, item in _FILES:
            name = s[item]
            if not name:
                continue
            path = self.cfg[key]
            try:
                data = _read(path)
            except OSError:
                raise TlsSetupError("%s file %s not on the terminal's flash" % (key, path))
            try:
                dig, up = await quectel_files.ensure(self.modem, name, data, known.get(name))
            except ATError as e:
                raise TlsSetupError("module file %s: %s" % (name, e))
            except quectel_files.FileError as e:
                raise TlsSetupError(str(e))
            if up:
                uploaded.append(name)
                known[name] = dig
                self.log.info("TLS: %s (%s, %d bytes) uploaded to the module", name, key, len(data))
        if uploaded:
            try:
                save(self.record_path, {"imei": self.modem.imei, "files": known})
            except OSError as e:
                self.log.warning("TLS: record of the module's files not saved: %s", e)
            self.emit_event("tls_files", {"uploaded": uploaded})

    async def prepare(self):
        """Files on the module, the driver's SSL context, the module's clock: ready for open_socket(tls=True)."""
        s = self.settings()
        await self._files(s)
        m = self.modem
        if m.tls != s:
            m.tls = s
            m._tls_gen = -1  # a changed context is applied before the next open
        if s["seclevel"] and not s["ignorelocaltime"]:
            if self.clock.source not in _TRUSTED:
                raise TlsSetupError("no trusted time (GNSS or network) yet: the module could not check the "
                                    "broker certificate's dates")
            await m.set_clock(civil(self.clock.now()))
