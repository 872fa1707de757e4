"""Check a terminal's config file on the host before it reaches a board: every problem, one per line.

Uses the firmware's own rules (firmware/config.py under CPython), so the host
refuses exactly what the terminal would ignore or replace. Secrets are never
shown, only their length.

    python -m tools.checkconfig PATH

Exit status 0 with "PATH: ok", or 2 with every problem (missing file, not JSON,
not an object, unknown key, bad value). With `broker_tls` true it also checks the
certificate files the terminal will upload to its module: `tls_ca` (when
`tls_verify`), `tls_cert` and `tls_key` must be readable PEM files of the right kind
on the host, where `make deploy` takes them from (tls_files below), and the client
certificate and key come as a pair. Their contents are never shown.
"""

import json
import os
import sys

from firmware import config


def problems(path):
    """Every problem of the config file at `path`, as human-readable lines (no secret in them)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return ["%s: cannot read it (%s)" % (path, e.strerror or e)]
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as e:
        return ["%s: not UTF-8 text (byte %d)" % (path, e.start)]
    except (ValueError, RecursionError) as e:
        return ["%s: not JSON: %s" % (path, _json_error(e))]
    try:
        cfg, found = config.resolve(doc)
    except config.ConfigError as e:
        return ["%s: %s" % (path, e)]
    out = ["%s: %s" % (path, _without_fallback(msg)) for _, _, msg in found]
    if cfg["broker_tls"]:
        out += ["%s: %s" % (path, msg) for msg in _tls_problems(path, doc, cfg)]
    return out


# config key, what it must hold, the PEM block that shows it
_PEM = {"tls_ca": ("a CA certificate", (b"-----BEGIN CERTIFICATE-----",)),
        "tls_cert": ("a certificate", (b"-----BEGIN CERTIFICATE-----",)),
        "tls_key": ("a private key", (b"-----BEGIN PRIVATE KEY-----", b"-----BEGIN EC PRIVATE KEY-----",
                                      b"-----BEGIN RSA PRIVATE KEY-----"))}


def host_path(config_path, name):
    """Where the host finds the file the config names `name` on the terminal's flash: an absolute path that exists
    here as it is (the unix port's flash is a host folder), otherwise the same path next to the config file."""
    if os.path.isabs(name) and os.path.exists(name):
        return name
    return os.path.join(os.path.dirname(os.path.abspath(config_path)), name.lstrip("/"))


def tls_files(config_path, cfg):
    """[(key, name on the terminal's flash, path on the host)] of the certificate files a TLS config needs."""
    if not cfg["broker_tls"]:
        return []
    keys = (["tls_ca"] if cfg["tls_verify"] else []) + [k for k in ("tls_cert", "tls_key") if cfg[k]]
    return [(k, cfg[k], host_path(config_path, cfg[k])) for k in keys]


def _tls_problems(path, doc, cfg):
    out = []
    empty_ca = cfg["tls_verify"] and doc.get("tls_ca", "ca.pem") == ""
    if empty_ca:
        out.append("broker_tls with tls_verify needs tls_ca, the CA file that signs the broker's certificate "
                   "(or tls_verify false, which accepts any broker)")
    if bool(cfg["tls_cert"]) != bool(cfg["tls_key"]):
        have, lacks = ("tls_cert", "tls_key") if cfg["tls_cert"] else ("tls_key", "tls_cert")
        out.append("%s is set but %s is empty: mutual TLS needs the client certificate and its key together" %
                   (have, lacks))
    for key, _, host in tls_files(path, cfg):
        if key == "tls_ca" and empty_ca:
            continue
        what, heads = _PEM[key]
        try:
            with open(host, "rb") as f:
                data = f.read(65536)
        except OSError as e:
            out.append("%s file %s: cannot read it (%s)" % (key, host, e.strerror or e))
            continue
        if not any(h in data for h in heads):
            out.append("%s file %s is not %s in PEM form (no %s line)" % (key, host, what, heads[0].decode()))
    return out


def _refuse_constant(name):
    # NaN and Infinity are not JSON; Python's parser takes them, the firmware's does not
    raise ValueError("%s is not a JSON number" % name)


def _json_error(e):
    if isinstance(e, json.JSONDecodeError):
        return "%s at line %d column %d" % (e.msg, e.lineno, e.colno)  # the message itself never quotes the text
    return str(e) if not isinstance(e, RecursionError) else "nested too deeply"


def _without_fallback(msg):
    # on the board a bad value falls back ("; using the default"); here it is simply refused
    head, sep, tail = msg.rpartition("; using ")
    return head if sep else msg


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr if len(argv) != 1 else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    path = argv[0]
    found = problems(path)
    if not found:
        print("%s: ok" % path)
        return 0
    for line in found:
        print(line)
    print("%s: %d problem(s); fix them before running or deploying it" % (path, len(found)), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
