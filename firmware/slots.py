"""Application slots: which code tree boots, a new version's single trial, its confirmation or rollback.

The factory install (`/firmware`, `/lib` beside main.py) is slot "base" and is never written by an
update. Updates are staged in `/app_a` or `/app_b`. One small JSON file, `/slots.json`, written
atomically (temp file, rename), says which slot is confirmed and which, if any, is on trial:

    {"confirmed": "a", "ver": "0.2.0", "trial": "b", "trial_ver": "0.3.0", "tries": 1,
     "why": "...", "last": {"ver": "0.3.0", "result": "rolled_back", "why": "...", "reported": false}}

A trial boots once. If it has not confirmed itself before the next reset (crash at import, crash loop,
watchdog, no link, or its own confirmation window running out), that reset boots the confirmed slot
again and records the rollback. A slot boots only when its `.ok` mark (written after every file was
verified) is present; otherwise the base install does. Each step is one atomic rename, so a power cut
at any point leaves either the old or the new version bootable, never neither.

This module must stay compatible across versions: an older release reads the file a newer one wrote.
"""

import json
import os

STATE = "/slots.json"
BASE = "base"
SLOTS = ("a", "b")
MARK = "/.ok"


def slot_dir(root, slot):
    return root if slot == BASE else root + "/app_" + slot


def slot_path(root, slot):
    """sys.path entries for a slot's code: its lib/ (drivers and fetched packages) then the slot itself."""
    d = slot_dir(root, slot)
    if slot == BASE:
        return [d + "/lib", d + "/build/lib", d or "/"]
    return [d + "/lib", d]


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def complete(root, slot):
    return slot == BASE or (slot in SLOTS and _exists(slot_dir(root, slot) + MARK))


def read(root):
    """The slot state; a missing or unreadable file means the base install, confirmed, with no trial."""
    try:
        with open(root + STATE) as f:
            st = json.load(f)
    except (OSError, ValueError):
        st = None
    if not isinstance(st, dict):
        st = {}
    if st.get("confirmed") not in SLOTS:
        st["confirmed"] = BASE
        st["ver"] = None
    if st.get("trial") not in SLOTS or st.get("trial") == st["confirmed"]:
        for k in ("trial", "trial_ver", "tries", "why"):
            st.pop(k, None)
    return st


def write(root, st):
    tmp = root + STATE + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(st))
    os.rename(tmp, root + STATE)  # atomic on littlefs and POSIX: the old state or the new, never half


def _rolled_back(st, why):
    out = {"confirmed": st["confirmed"], "ver": st.get("ver"),
           "last": {"ver": st.get("trial_ver"), "result": "rolled_back", "why": why, "reported": False}}
    return out


def next_boot(root):
    """The slot the next boot will run, without recording anything."""
    st = read(root)
    trial = st.get("trial")
    if trial and not st.get("tries") and complete(root, trial):
        return trial
    return st["confirmed"] if complete(root, st["confirmed"]) else BASE


def _vt(ver):
    try:
        return tuple(int(x) for x in ver.split("."))
    except (AttributeError, ValueError):
        return None


def boot(root, base_ver=None):
    """Choose the slot to run now and record a trial's one attempt; returns (slot, state).

    `base_ver` is the factory install's version: a confirmed slot that is not newer than it was
    overtaken by a deploy, and the factory install becomes the confirmed version again.
    """
    st = read(root)
    cv, bv = _vt(st.get("ver")), _vt(base_ver)
    if st["confirmed"] != BASE and cv is not None and bv is not None and cv <= bv:
        st["confirmed"], st["ver"] = BASE, None
        write(root, st)
    trial = st.get("trial")
    if trial:
        if st.get("tries") or not complete(root, trial):
            st = _rolled_back(st, st.get("why") or ("not confirmed" if st.get("tries") else "incomplete"))
            write(root, st)
        else:
            st["tries"] = 1
            write(root, st)  # before the trial runs: a reset from now on counts as its failure
            return trial, st
    slot = st["confirmed"]
    return (slot if complete(root, slot) else BASE), st


def stage(root, slot, ver):
    """Make the verified, marked `slot` the trial of the next boot."""
    if not complete(root, slot):
        raise ValueError("slot %s is not complete" % slot)
    st = read(root)
    if slot == st["confirmed"]:
        raise ValueError("slot %s is the confirmed one" % slot)
    st.pop("why", None)
    st.update({"trial": slot, "trial_ver": ver, "tries": 0})
    write(root, st)


def fail(root, why):
    """The running trial failed (e.g. at import): say why, for the rollback the next boot makes."""
    st = read(root)
    if st.get("trial"):
        st["why"] = why[:120]
        write(root, st)


def confirm(root, slot):
    """The trial `slot` proved healthy: it becomes the confirmed slot. False when it was not on trial."""
    st = read(root)
    if st.get("trial") != slot:
        return False
    write(root, {"confirmed": slot, "ver": st.get("trial_ver"),
                 "last": {"ver": st.get("trial_ver"), "result": "confirmed", "reported": False}})
    return True


def mark_reported(root):
    st = read(root)
    last = st.get("last")
    if isinstance(last, dict) and not last.get("reported"):
        last["reported"] = True
        write(root, st)
