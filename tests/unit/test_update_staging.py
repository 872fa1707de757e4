"""Signed update staging and A/B slots: switch, confirm, rollback; each bad bundle refused with nothing changed."""

import hashlib
import json
import os

import edsign
from portable import raises, rmtree, scratch

from firmware import slots, staging
from firmware.staging import Stager, UpdateError

SEED = bytes(range(32))
PUB = edsign.public(SEED)
CHUNK = 100


def _hexs(b):
    return "".join("%02x" % x for x in b)


def _bundle(ver, files=None):
    files = files or {"firmware/__init__.mpy": b"VERSION " + ver.encode(), "firmware/app.mpy": b"A" * 250,
                      "lib/x.mpy": b"xyz" * 41}
    entries = [[p, len(d), _hexs(hashlib.sha256(d).digest())] for p, d in sorted(files.items())]
    manifest = json.dumps({"app": "bdmeter", "ver": ver, "files": entries}).encode()
    sig = edsign.sign(SEED, manifest)
    return {"ver": ver, "msize": len(manifest), "sig": _hexs(sig)}, manifest, files


def _stage_all(root, offer, manifest, files, running="base"):
    st = Stager(root, PUB, running)
    st.take_manifest(offer, manifest)
    for _ in range(100):
        req = st.next_request(CHUNK)
        if req is None:
            break
        path, off, n = req
        assert st.accept(path, off, files[path][off:off + n])
    return st.finish()


def _snapshot(root):
    out = {}
    for name in ("slots.json", "app_a", "app_b"):
        try:
            p = root + "/" + name
            out[name] = os.stat(p)[6] if name.endswith("json") else sorted(os.listdir(p))
        except OSError:
            out[name] = None
    return out


def test_switch_confirm_then_rollback_of_the_next_version():
    root = scratch("upd-switch")
    offer, m, files = _bundle("0.2.0")
    assert staging.check_offer(offer, "0.1.0")["ver"] == "0.2.0"
    slot = _stage_all(root, offer, m, files)
    assert slot == "a" and slots.next_boot(root) == "a"
    chosen, st = slots.boot(root)
    assert chosen == "a" and st["tries"] == 1
    with open(root + "/app_a/firmware/__init__.mpy", "rb") as f:
        assert f.read() == b"VERSION 0.2.0"
    assert slots.confirm(root, "a")
    assert slots.boot(root)[0] == "a" and slots.read(root)["ver"] == "0.2.0"
    # 0.3.0 goes to b beside the running a; it never confirms: the next boot is a again, with the reason kept
    offer, m, files = _bundle("0.3.0")
    assert _stage_all(root, offer, m, files, running="a") == "b"
    assert slots.boot(root)[0] == "b"
    slots.fail(root, "import: ImportError")
    assert slots.next_boot(root) == "a"
    chosen, st = slots.boot(root)
    assert chosen == "a" and st["ver"] == "0.2.0"
    assert st["last"] == {"ver": "0.3.0", "result": "rolled_back", "why": "import: ImportError", "reported": False}
    slots.mark_reported(root)
    assert slots.read(root)["last"]["reported"] is True
    rmtree(root)


def test_reset_without_confirmation_rolls_back():
    root = scratch("upd-noconfirm")
    offer, m, files = _bundle("0.2.0")
    _stage_all(root, offer, m, files)
    assert slots.boot(root)[0] == "a"
    chosen, st = slots.boot(root)  # watchdog, crash loop, no link: the trial never confirmed
    assert chosen == "base" and st["last"]["why"] == "not confirmed"
    assert not slots.confirm(root, "a")  # too late: nothing to confirm
    rmtree(root)


def test_slot_without_mark_never_boots():
    root = scratch("upd-mark")
    offer, m, files = _bundle("0.2.0")
    _stage_all(root, offer, m, files)
    os.remove(root + "/app_a/.ok")
    assert slots.boot(root)[0] == "base"
    slots.write(root, {"confirmed": "b", "ver": "0.9.0"})  # confirmed but gone: the base install boots
    assert slots.boot(root)[0] == "base"
    rmtree(root)


def test_bad_signature_refused_nothing_changed():
    root = scratch("upd-badsig")
    offer, m, files = _bundle("0.2.0")
    before = _snapshot(root)
    st = Stager(root, PUB, "base")
    bad = dict(offer, sig=offer["sig"][:-2] + ("00" if offer["sig"][-2:] != "00" else "01"))
    assert raises(UpdateError, st.take_manifest, bad, m).code == "bad_signature"
    # a manifest altered after signing (a file's hash swapped) is the same refusal
    m2 = m.replace(b"firmware/app.mpy", b"firmware/apq.mpy")
    assert raises(UpdateError, st.take_manifest, offer, m2).code == "bad_signature"
    other = edsign.public(b"\x01" * 32)
    assert raises(UpdateError, Stager(root, other, "base").take_manifest, offer, m).code == "bad_signature"
    assert _snapshot(root) == before and slots.boot(root)[0] == "base"
    rmtree(root)


def test_hash_mismatch_refused_nothing_changed():
    root = scratch("upd-hash")
    offer, m, files = _bundle("0.2.0")
    st = Stager(root, PUB, "base")
    st.take_manifest(offer, m)
    evil = dict(files)
    evil["firmware/app.mpy"] = b"B" * 250  # right size, wrong content
    e = None
    for _ in range(100):
        path, off, n = st.next_request(CHUNK)
        try:
            st.accept(path, off, evil[path][off:off + n])
        except UpdateError as x:
            e = x
            break
    assert e is not None and e.code == "hash_mismatch"
    assert slots.read(root) == {"confirmed": "base", "ver": None} and slots.boot(root)[0] == "base"
    assert not slots.complete(root, "a")
    staging.abandon(root, "a")
    assert _snapshot(root)["app_a"] is None
    rmtree(root)


def test_truncated_bundle_refused_nothing_changed():
    root = scratch("upd-trunc")
    offer, m, files = _bundle("0.2.0")
    st = Stager(root, PUB, "base")
    assert raises(UpdateError, st.take_manifest, offer, m[:-5]).code == "truncated"
    st.take_manifest(offer, m)
    path, off, n = st.next_request(CHUNK)
    st.accept(path, off, files[path][off:off + n])
    path, off, n = st.next_request(CHUNK)
    assert raises(UpdateError, st.accept, path, off, b"").code == "truncated"  # the server's copy ends early
    assert raises(UpdateError, st.accept, path, off, b"z" * 1000).code == "truncated"
    assert raises(UpdateError, st.finish).code == "truncated"
    assert slots.read(root) == {"confirmed": "base", "ver": None} and slots.boot(root)[0] == "base"
    rmtree(root)


def test_replayed_older_update_refused_unless_downgrade_allowed():
    offer, m, files = _bundle("0.1.0")
    assert raises(UpdateError, staging.check_offer, offer, "0.2.0").code == "downgrade_refused"
    assert raises(UpdateError, staging.check_offer, offer, "0.1.0").code == "same_version"
    assert staging.check_offer(dict(offer, downgrade=True), "0.2.0")["downgrade"] is True
    assert raises(UpdateError, staging.check_offer, dict(offer, ver="1.x"), "0.2.0").code == "bad_version"
    assert raises(UpdateError, staging.check_offer, dict(offer, sig="zz"), "0.0.1").code == "bad_args"
    # an offer whose version differs from the signed manifest's is refused too
    root = scratch("upd-replay")
    lie = dict(offer, ver="0.9.0")  # a signed 0.1.0 manifest offered as 0.9.0 to pass the version check
    assert raises(UpdateError, Stager(root, PUB, "base").take_manifest, lie, m).code == "bad_manifest"
    assert slots.read(root) == {"confirmed": "base", "ver": None}
    rmtree(root)


def test_unsafe_manifest_paths_refused():
    for bad in ("../boot.py", "/main.py", "offer.json", "firmware/../x", "lib/.ok", "main.py"):
        offer, m, _ = _bundle("0.2.0", {"firmware/__init__.mpy": b"v", bad: b"x"})
        assert raises(UpdateError, staging.parse_manifest, m, PUB, offer).code == "bad_manifest", bad


def test_resume_after_reset_continues_where_flash_stopped():
    root = scratch("upd-resume")
    offer, m, files = _bundle("0.2.0")
    st = Stager(root, PUB, "base")
    st.take_manifest(offer, m)
    for _ in range(3):
        path, off, n = st.next_request(CHUNK)
        st.accept(path, off, files[path][off:off + n])
    done, total = st.progress()
    assert 0 < done < total
    st2 = Stager(root, PUB, "base")  # power cut, reboot
    assert st2.pending()["ver"] == "0.2.0" and st2.same(offer)
    path, off, n = st2.next_request(CHUNK)
    assert st2.progress()[0] == done and off > 0
    assert not st2.accept(path, off + 1, b"x")  # a late, stale chunk is ignored
    for _ in range(100):
        req = st2.next_request(CHUNK)
        if req is None:
            break
        st2.accept(req[0], req[1], files[req[0]][req[1]:req[1] + req[2]])
    assert st2.finish() == "a" and slots.next_boot(root) == "a"
    assert raises(UpdateError, Stager, root, PUB, "base").code == "busy"  # a trial is pending
    rmtree(root)


def test_a_deploy_newer_than_the_confirmed_slot_wins():
    root = scratch("upd-deploy")
    offer, m, files = _bundle("0.2.0")
    _stage_all(root, offer, m, files)
    slots.boot(root, "0.1.0")
    slots.confirm(root, "a")
    assert slots.boot(root, "0.1.0")[0] == "a"  # the update is newer than the factory install
    chosen, st = slots.boot(root, "0.3.0")  # a site visit deployed 0.3.0 as the factory install
    assert chosen == "base" and st["confirmed"] == "base" and slots.read(root)["confirmed"] == "base"
    rmtree(root)
