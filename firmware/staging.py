"""Staging a signed update in the spare slot: offer checks, signed manifest, resumable file writes, verification.

No I/O besides the flash: the caller fetches chunks (firmware/update.py over MQTT, tests from memory).
Nothing outside the spare slot is written before every file's SHA-256 and the manifest's Ed25519
signature have been checked again on what reached the flash; only then `slots.stage` flips the state.
"""

import hashlib
import json
import os

import ed25519

from firmware import slots

APP = "bdmeter"
MANIFEST = "manifest"  # the name the manifest is fetched under
MAX_MANIFEST = 8192
MAX_TOTAL = 1024 * 1024  # bytes of code a bundle may hold
_OFFER = "/offer.json"  # in the slot: the accepted offer and its manifest, written once verified
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./"
_HEX = "0123456789abcdef"


class UpdateError(Exception):
    """An update refused or failed; `code` is the short reason sent to the server."""

    def __init__(self, code, detail=""):
        super().__init__(code + (": " + detail if detail else ""))
        self.code = code


def parse_ver(text):
    """"1.2.3" -> (1, 2, 3); UpdateError("bad_version") for anything else."""
    if not isinstance(text, str) or not 0 < len(text) <= 16:
        raise UpdateError("bad_version")
    out = []
    for part in text.split("."):
        if not part or any(not "0" <= c <= "9" for c in part):
            raise UpdateError("bad_version")
        out.append(int(part))
    return tuple(out)


def _hex(text, nbytes):
    if not isinstance(text, str) or len(text) != 2 * nbytes or any(c not in _HEX for c in text):
        return None
    return bytes.fromhex(text)


def check_offer(offer, running_ver):
    """Validate an `update` command's args against the running version; returns them normalised."""
    if not isinstance(offer, dict):
        raise UpdateError("bad_args")
    ver = offer.get("ver")
    msize = offer.get("msize")
    sig = _hex(offer.get("sig"), 64)
    down = offer.get("downgrade", False)
    if sig is None or not isinstance(msize, int) or not 0 < msize <= MAX_MANIFEST or down not in (True, False):
        raise UpdateError("bad_args")
    new = parse_ver(ver)
    cur = parse_ver(running_ver)
    if new == cur:
        raise UpdateError("same_version")
    if new < cur and not down:
        raise UpdateError("downgrade_refused")
    return {"ver": ver, "msize": msize, "sig": offer["sig"], "downgrade": down}


def _safe_path(p):
    if not isinstance(p, str) or not p or len(p) > 96 or p[0] == "/" or any(c not in _PATH_CHARS for c in p):
        return False
    parts = p.split("/")
    # code only: the slot's own bookkeeping (offer.json, .ok) lives at its top level
    return parts[0] in ("firmware", "lib") and len(parts) > 1 and all(q and q[0] != "." for q in parts)


def parse_manifest(data, pubkey, offer):
    """Check the signature first, then the content; returns the list of [path, size, sha256 hex]."""
    if len(data) != offer["msize"]:
        raise UpdateError("truncated", "manifest %d of %d bytes" % (len(data), offer["msize"]))
    try:
        ed25519.verify(pubkey, data, bytes.fromhex(offer["sig"]))
    except ed25519.BadSignature:
        raise UpdateError("bad_signature")
    try:
        m = json.loads(data)
    except ValueError:
        raise UpdateError("bad_manifest", "not JSON")
    if not isinstance(m, dict) or m.get("app") != APP or m.get("ver") != offer["ver"]:
        raise UpdateError("bad_manifest", "app or version differs from the offer")
    files = m.get("files")
    if not isinstance(files, list) or not files:
        raise UpdateError("bad_manifest", "no files")
    total = 0
    seen = set()
    for e in files:
        if (not isinstance(e, list) or len(e) != 3 or not _safe_path(e[0]) or e[0] in seen
                or not isinstance(e[1], int) or e[1] < 0 or _hex(e[2], 32) is None):
            raise UpdateError("bad_manifest", "bad file entry")
        seen.add(e[0])
        total += e[1]
    if total > MAX_TOTAL or "firmware/__init__.mpy" not in seen:
        raise UpdateError("bad_manifest", "too big or no firmware package")
    return files


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _makedirs(path):
    cur = "/" if path.startswith("/") else ""
    for part in path.split("/"):
        if not part:
            continue
        cur = cur + part
        if _size(cur) < 0:
            os.mkdir(cur)
        cur += "/"


def rmtree(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        p = path + "/" + name
        try:
            os.remove(p)
        except OSError:
            rmtree(p)
    try:
        os.rmdir(path)
    except OSError:
        pass


def sha256_file(path):
    h = hashlib.sha256()
    buf = bytearray(512)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(buf if n == len(buf) else buf[:n])
    return h.digest()


class Stager:
    """Stages one offer in the spare slot. Call `next_request` / `accept` until None, then `finish`."""

    def __init__(self, root, pubkey, running_slot):
        self.root = root
        self.pubkey = pubkey
        st = slots.read(root)
        if st.get("trial"):
            raise UpdateError("busy", "a trial is pending")
        spare = [s for s in slots.SLOTS if s != running_slot and s != st["confirmed"]]
        if not spare:
            raise UpdateError("busy", "no spare slot")
        self.slot = spare[0]
        self.dir = slots.slot_dir(root, self.slot)
        self.offer = None
        self.files = []  # [path, size, sha256 hex] of the manifest in hand
        self._i = 0  # index of the first file not yet complete

    def pending(self):
        """The offer staged in the spare slot and not yet finished (resumed after a reset), or None."""
        try:
            with open(self.dir + _OFFER) as f:
                saved = json.load(f)
            offer, mtext = saved["offer"], saved["manifest"].encode()
            self.files = parse_manifest(mtext, self.pubkey, offer)
        except (OSError, ValueError, KeyError, TypeError, UpdateError):
            return None
        if slots.complete(self.root, self.slot):
            return None
        self.offer = offer
        return offer

    def same(self, offer):
        return self.offer is not None and self.offer["ver"] == offer["ver"] and self.offer["sig"] == offer["sig"]

    def take_manifest(self, offer, data):
        """Verify the fetched manifest; only then clear the spare slot and record the offer there."""
        files = parse_manifest(bytes(data), self.pubkey, offer)
        try:
            os.remove(self.dir + slots.MARK)  # first: a half-cleared slot must never look bootable
        except OSError:
            pass
        rmtree(self.dir)
        _makedirs(self.dir)
        tmp = self.dir + _OFFER + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps({"offer": offer, "manifest": bytes(data).decode()}))
        os.rename(tmp, self.dir + _OFFER)
        self.offer, self.files, self._i = offer, files, 0

    def progress(self):
        """(bytes on flash, bytes in the bundle)."""
        done = total = 0
        for path, size, _ in self.files:
            total += size
            done += max(0, min(size, _size(self.dir + "/" + path)))
        return done, total

    def next_request(self, chunk):
        """(path, offset, length) of the next chunk to fetch, or None when every file is on flash."""
        while self._i < len(self.files):
            path, size, _ = self.files[self._i]
            have = _size(self.dir + "/" + path)
            if have > size:  # longer than the manifest says: start that file again
                os.remove(self.dir + "/" + path)
                have = -1
            if have < size:
                start = max(have, 0)
                return path, start, min(chunk, size - start)
            self._i += 1
        return None

    def accept(self, path, off, data):
        """Append a fetched chunk; a file is hashed as soon as it is complete. False for a stale chunk."""
        if self._i >= len(self.files) or path != self.files[self._i][0]:
            return False
        _, size, digest = self.files[self._i]
        full = self.dir + "/" + path
        have = max(_size(full), 0)
        if off != have:
            return False  # a late answer to an earlier request
        if not data:
            raise UpdateError("truncated", "%s ends at %d of %d bytes" % (path, off, size))
        if off + len(data) > size:
            raise UpdateError("truncated", "%s longer than the manifest says" % path)
        if have == 0:
            _makedirs(full.rpartition("/")[0])
        with open(full, "ab" if have else "wb") as f:
            f.write(data)
        if off + len(data) == size:
            self._check(full, digest)
            self._i += 1
        return True

    def _check(self, full, digest):
        if sha256_file(full) != bytes.fromhex(digest):
            os.remove(full)
            raise UpdateError("hash_mismatch", full.rpartition("/")[2])

    def finish(self):
        """Check the signature and every file again from flash, mark the slot, make it the next boot's trial."""
        with open(self.dir + _OFFER) as f:
            saved = json.load(f)
        files = parse_manifest(saved["manifest"].encode(), self.pubkey, saved["offer"])
        for path, size, digest in files:
            full = self.dir + "/" + path
            if _size(full) != size:
                raise UpdateError("truncated", path)
            self._check(full, digest)
        with open(self.dir + slots.MARK, "w") as f:
            f.write(saved["offer"]["ver"])
        slots.stage(self.root, self.slot, saved["offer"]["ver"])
        return self.slot


def abandon(root, slot):
    """Forget a failed staging: the spare slot is emptied (it was never bootable)."""
    d = slots.slot_dir(root, slot)
    try:
        os.remove(d + slots.MARK)
    except OSError:
        pass
    rmtree(d)
