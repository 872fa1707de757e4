"""tools/release: key handling, a signed bundle the terminal's own checks accept, refusals, chunk serving."""

import base64
import json
import sys

import pytest

from harness import ROOT
from tools import release
from tools.release import rehearsal_tree as versioned_tree

sys.path.insert(0, str(ROOT / "lib"))
from firmware import VERSION, staging  # noqa: E402


def test_keygen_private_key_stays_private_and_is_never_overwritten(tmp_path):
    key = tmp_path / "release.key"
    assert release.main(["keygen", "--key", str(key)]) == 0
    assert key.stat().st_mode & 0o777 == 0o600
    pub = release.public_hex(key)
    assert len(pub) == 64
    before = key.read_bytes()
    assert release.main(["keygen", "--key", str(key)]) == 2
    assert key.read_bytes() == before


def test_pack_verify_and_the_terminal_accepts_it(tmp_path):
    key = tmp_path / "k"
    pub = release.keygen(key)
    tree = versioned_tree(tmp_path / "tree", "0.2.0")
    out = tmp_path / "bundle"
    assert release.main(["pack", "--key", str(key), "--tree", str(tree), "--version", "0.2.0", "--out", str(out)]) == 0
    assert release.verify(out, pub) == []
    b = release.Bundle(out)
    offer = staging.check_offer(b.offer(), VERSION)
    files = staging.parse_manifest(b.manifest, bytes.fromhex(pub), offer)
    paths = {f[0] for f in files}
    assert "firmware/app.mpy" in paths and "lib/ed25519.mpy" in paths and "lib/umqtt/simple.mpy" in paths
    assert not any(p.endswith(("main.py", "boot.py")) for p in paths)
    # chunks: what the head-end serves
    assert b.chunk("manifest", 0, 10) == b.manifest[:10]
    assert b.chunk("firmware/app.mpy", 5, 7) == (out / "files/firmware/app.mpy").read_bytes()[5:12]
    assert b.chunk("nope", 0, 1) is None and b.chunk("manifest", -1, 1) is None
    assert b.chunk("manifest", len(b.manifest), 10) == b""
    # the answers the head-end publishes on updc
    ans = json.loads(b.answer(json.dumps({"v": 2, "ver": "0.2.0", "f": "manifest", "off": 4, "n": 6})))
    assert ans["off"] == 4 and base64.b64decode(ans["data"]) == b.manifest[4:10]
    assert json.loads(b.answer(b'{"ver":"0.2.0","f":"lib/none.mpy","off":0,"n":9}'))["error"] == "range"
    assert b.answer(b'{"ver":"0.1.0","f":"manifest","off":0,"n":9}') is None and b.answer(b"junk") is None
    # tampering with a file after signing is caught; so is another key
    (out / "files/firmware/app.mpy").write_bytes(b"x")
    assert release.verify(out, pub) == ["firmware/app.mpy: size or hash differs from the manifest"]
    assert release.verify(out, release.keygen(tmp_path / "k2")) == ["signature does not verify with this public key"]


def test_pack_refuses_a_tree_of_another_version_and_bad_args(tmp_path, capsys):
    key = tmp_path / "k"
    release.keygen(key)
    tree = versioned_tree(tmp_path / "tree", "0.2.0")
    assert release.main(["pack", "--key", str(key), "--tree", str(tree), "--version", "0.3.0",
                         "--out", str(tmp_path / "b")]) == 2
    assert "does not say version 0.3.0" in capsys.readouterr().err
    assert release.main(["pack", "--key", str(tmp_path / "missing"), "--tree", str(tree), "--version", "0.2.0",
                         "--out", str(tmp_path / "b")]) == 2
    with pytest.raises(SystemExit):
        release.main(["verify", "--bundle", str(tmp_path), "--pubkey", "xyz"])
    assert json.loads(release.manifest_bytes("1.0", [("firmware/a.mpy", b"")]))["files"][0][1] == 0
