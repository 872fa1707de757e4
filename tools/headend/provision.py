"""`bdmeter-headend provision`: one terminal's broker account, command key and config for `make deploy`.

    bdmeter-headend provision TID --passwd-file PATH --out DIR [--db fleet.db [--create]] [--ca CA.pem
                              [--client-cert --ca-key CA.key]] [--base SITE.json] [--broker-port 8883]

Makes a random broker password (16 bytes, hex) and command key (32 bytes, hex) for the terminal; adds its
account (username = TID) to the broker's password file, hashed by `mosquitto_passwd` (the password is fed on
its standard input, never on a command line that other users could read; a missing file is created with mode
0600), replacing an existing one; stores the command key in the head-end's database as `bdmeter-headend key`
does (encrypted when a master key is configured, tools/headend/keyring.py); and writes DIR/terminal.json
(mode 0600: it holds the secrets) with terminal_id, broker_user, broker_pass, cmd_key, broker_tls and tls_ca,
on top of the site's common keys from --base, with the CA beside it as DIR/ca.pem, ready for `make deploy
CONFIG=DIR/terminal.json`. --client-cert also issues the terminal a client certificate from the CA
(DIR/client.pem, DIR/client.key) for mutual TLS.

Provisioning a terminal again rotates its password and key: once the broker reloads its password file
(SIGHUP) the old password is refused, and commands signed with the old key are refused by the terminal once
its new config is deployed. Neither secret is ever printed or logged.
"""

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

from tools.headend import args as types

PROG = "bdmeter-headend provision"
CONFIG_NAME = "terminal.json"


class Refused(Exception):
    """A bad argument or an unusable file, found before anything is written; the message names it."""


def add_parser(sub):
    p = sub.add_parser("provision", help="make a terminal's broker account, command key and config for deploy")
    p.add_argument("terminal", type=types.terminal, metavar="TID", help="the terminal's id (its IMEI by default)")
    p.add_argument("--passwd-file", required=True, metavar="PATH",
                   help="the broker's password file for the terminals' listeners (created, mode 0600, if missing)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for terminal.json and the certificate files")
    p.add_argument("--db", default="fleet.db", help="the head-end's database, for the command key (default "
                   "%(default)s)")
    p.add_argument("--create", action="store_true", help="create the database if it does not exist")
    p.add_argument("--ca", metavar="CA.pem", help="the CA certificate the terminal verifies the broker by "
                   "(copied to DIR/ca.pem); without it, put the CA there yourself before deploying")
    p.add_argument("--client-cert", action="store_true", help="issue a client certificate for mutual TLS "
                   "(needs --ca and --ca-key)")
    p.add_argument("--ca-key", metavar="CA.key", help="the CA's private key (PEM, unencrypted), for --client-cert")
    p.add_argument("--base", metavar="SITE.json", help="the site's common config keys (board, apn, broker_host, "
                   "meters...) to write under the terminal's own")
    p.add_argument("--broker-port", type=int, metavar="PORT", help="the broker's TLS port for the terminal")


def _pem(path, opt, marker):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise Refused("argument %s: cannot read %s (%s)" % (opt, path, e.strerror or e))
    if marker not in data:
        raise Refused("argument %s: %s is not PEM with a %s block" % (opt, path, marker.decode()))
    return data


def _check(a):
    """Everything checked before anything is written; returns (base config, CA bytes, CA key or None)."""
    from tools.procs import is_headend

    if is_headend(a.terminal):
        raise Refused("argument TID: ids starting with 'headend' are the head-end's accounts")
    pw = Path(a.passwd_file)
    if pw.exists() and not pw.is_file():
        raise Refused("argument --passwd-file: %s is not a file" % pw)
    if not pw.parent.is_dir():
        raise Refused("argument --passwd-file: folder %s does not exist" % pw.parent)
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise Refused("argument --out: %s is not a folder" % out)
    if a.broker_port is not None and not 0 < a.broker_port < 65536:
        raise Refused("argument --broker-port: must be 1..65535")
    if a.client_cert and (a.ca is None or a.ca_key is None):
        raise Refused("argument --client-cert: needs --ca and --ca-key (the CA that signs it)")
    if a.ca_key is not None and not a.client_cert:
        raise Refused("argument --ca-key: only used with --client-cert")
    if not a.create:
        try:
            types.existing_db(a.db)
        except argparse.ArgumentTypeError as e:
            raise Refused("argument --db: %s; give --create to start a new one" % e)
    base = {}
    if a.base is not None:
        try:
            base = json.loads(Path(a.base).read_text())
        except OSError as e:
            raise Refused("argument --base: cannot read %s (%s)" % (a.base, e.strerror or e))
        except ValueError:
            raise Refused("argument --base: %s is not JSON" % a.base)
        if not isinstance(base, dict):
            raise Refused("argument --base: %s is not a JSON object" % a.base)
    ca = _pem(a.ca, "--ca", b"-----BEGIN CERTIFICATE-----") if a.ca else None
    ca_key = None
    if a.client_cert:
        ca_key = _ca_key(a, ca)
    exe = shutil.which("mosquitto_passwd") or ("/usr/bin/mosquitto_passwd"
                                               if os.path.exists("/usr/bin/mosquitto_passwd") else None)
    if exe is None:
        raise Refused("mosquitto_passwd is not installed (Debian package mosquitto)")
    return base, ca, ca_key, exe


def _ca_key(a, ca):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = _pem(a.ca_key, "--ca-key", b"PRIVATE KEY-----")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise Refused("argument --ca-key: %s is not an unencrypted private key" % a.ca_key)
    cert = x509.load_pem_x509_certificate(ca)
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise Refused("argument --ca-key: %s is not the key of %s" % (a.ca_key, a.ca))
    return key, cert


def _write(path, data, mode):
    """Write `data` to `path` with `mode` from the start (never readable by others, not even for a moment)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


def _client_cert(tid, ca_key, out):
    from tools import pki

    key, cert = pki.leaf(ca_key[0], ca_key[1], tid, False)
    _write(out / "client.pem", pki_bytes(cert), 0o644)
    _write(out / "client.key", pki_bytes(key), 0o600)


def pki_bytes(obj):
    from cryptography.hazmat.primitives import serialization

    if hasattr(obj, "public_bytes"):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def set_password(exe, path, user, password):
    """Add or replace `user` in the mosquitto password file `path`, hashed; the password goes through stdin."""
    path = Path(path)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    r = subprocess.run([exe, str(path), user], input="%s\n%s\n" % (password, password), capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        why = " ".join(line for line in r.stderr.splitlines() if password not in line)[:200]
        raise OSError("mosquitto_passwd could not update %s: %s" % (path, why or "exit %d" % r.returncode))


def config_for(tid, password, key, base, broker_port=None, client_cert=False):
    """The terminal's config: the site's keys, then its own."""
    cfg = {k: v for k, v in base.items()}
    cfg.update(terminal_id=tid, broker_user=tid, broker_pass=password, cmd_key=key, broker_tls=True,
               tls_ca="ca.pem", tls_verify=True)
    if broker_port is not None:
        cfg["broker_port"] = broker_port
    if client_cert:
        cfg.update(tls_cert="client.pem", tls_key="client.key")
    else:
        cfg.pop("tls_cert", None)
        cfg.pop("tls_key", None)
    return cfg


def provision(a):
    """Check, then write DIR's files, store the key, update the password file; returns the lines to print."""
    from tools.headend.pgstore import open_store

    base, ca, ca_key, exe = _check(a)
    password, key = os.urandom(16).hex(), os.urandom(32).hex()
    cfg = config_for(a.terminal, password, key, base, a.broker_port, a.client_cert)
    try:  # in the source tree: the site's keys checked by the firmware's rules (make deploy checks them again)
        from firmware import config as fwconfig
    except ImportError:
        fwconfig = None
    found = fwconfig.resolve(cfg)[1] if fwconfig is not None else []
    if found:  # before anything is written; the messages never hold a secret
        raise Refused("argument --base: %s" % "; ".join(msg for _, _, msg in found))
    store = open_store(a.db)
    try:
        rotated = bool(store.query("SELECT tid FROM keys WHERE tid = ?", (a.terminal,)))
        out = Path(a.out)
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        if ca is not None:
            _write(out / "ca.pem", ca, 0o644)
        if a.client_cert:
            _client_cert(a.terminal, ca_key, out)
        path = _write(out / CONFIG_NAME, (json.dumps(cfg, indent=1) + "\n").encode(), 0o600)
        store.set_key(a.terminal, key)
    finally:
        store.close()
    set_password(exe, a.passwd_file, a.terminal, password)
    lines = ["%s %s: broker account in %s (hashed), command key in %s"
             % ("rotated" if rotated else "provisioned", a.terminal, a.passwd_file, a.db),
             "config %s (mode 0600, it holds the terminal's secrets): make deploy CONFIG=%s, then delete it"
             % (path, path)]
    if ca is None:
        lines.append("no --ca: put the CA that signs the broker's certificate at %s before deploying"
                     % (out / "ca.pem"))
    if a.client_cert:
        lines.append("client certificate %s and key %s (mutual TLS)" % (out / "client.pem", out / "client.key"))
    lines.append("reload the broker to apply the account (SIGHUP: systemctl reload mosquitto)%s"
                 % ("; the old password is refused from then on" if rotated else ""))
    return lines


def cmd_provision(a):
    import sys

    try:
        lines = provision(a)
    except Refused as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


COMMANDS = {"provision": cmd_provision}
