"""Terminals' command keys encrypted at rest (AES-256-GCM) with a master key from a file or the environment.

The master key is 32 bytes as 64 hex characters, taken from `BDMETER_MASTER_KEY` or from the file named by
`BDMETER_MASTER_KEY_FILE` (the file holds the hex, surrounding white space ignored). A stored command key is
then `aesgcm1:<nonce hex>:<ciphertext hex>`, authenticated with the terminal id, so a value copied to
another terminal's row does not decrypt. Without a master key, keys are stored as plain hex (as before) and
a warning says so once; a stored encrypted key without the master key is an error naming the variable.
Neither the master key nor a command key ever appears in a message.
"""

import logging
import os
import re

log = logging.getLogger("bdmeter.headend")

PREFIX = "aesgcm1:"
ENV_KEY = "BDMETER_MASTER_KEY"
ENV_FILE = "BDMETER_MASTER_KEY_FILE"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_warned = []


class KeyringError(ValueError):
    pass


def master_key(environ=None):
    """The master key (32 bytes) from the environment, or None when none is configured."""
    env = os.environ if environ is None else environ
    text, where = env.get(ENV_KEY), ENV_KEY
    if not text and env.get(ENV_FILE):
        where = "%s (%s)" % (ENV_FILE, env[ENV_FILE])
        try:
            with open(env[ENV_FILE]) as f:
                text = f.read()
        except OSError as e:
            raise KeyringError("master key file %s: %s" % (env[ENV_FILE], e.strerror or e))
    if not text:
        return None
    text = text.strip()
    if not _HEX64.match(text):
        raise KeyringError("the master key in %s is not 64 hex characters (32 bytes)" % where)
    return bytes.fromhex(text)


def new_master_key_file(path):
    """Write a fresh random master key to `path` (mode 0600); refuse to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    return path


def seal(tid, key_hex, master=None):
    """The value to store for a terminal's key: encrypted when a master key is configured."""
    master = master_key() if master is None else master
    if master is None:
        if not _warned:
            _warned.append(1)
            log.warning("command keys are stored unencrypted: set %s or %s to encrypt them", ENV_KEY, ENV_FILE)
        return key_hex.lower()
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    ct = AESGCM(master).encrypt(nonce, bytes.fromhex(key_hex), tid.encode())
    return PREFIX + nonce.hex() + ":" + ct.hex()


def is_sealed(value):
    return isinstance(value, str) and value.startswith(PREFIX)


def unseal(tid, stored, master=None):
    """The terminal's key as hex from its stored value (plain hex or sealed)."""
    if stored is None or not is_sealed(stored):
        return stored
    master = master_key() if master is None else master
    if master is None:
        raise KeyringError("the command key of %s is encrypted: set %s or %s to the master key"
                           % (tid, ENV_KEY, ENV_FILE))
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        nonce_hex, ct_hex = stored[len(PREFIX):].split(":")
        return AESGCM(master).decrypt(bytes.fromhex(nonce_hex), bytes.fromhex(ct_hex), tid.encode()).hex()
    except (ValueError, InvalidTag):
        raise KeyringError("the command key of %s does not decrypt with this master key" % tid)
