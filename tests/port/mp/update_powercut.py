"""Power cuts during a signed update, on littlefs: download, staging, switch, confirmation and rollback.

    micropython tests/port/mp/update_powercut.py <trials> <seed>

Each trial formats a fresh littlefs (vfs.VfsLfs2) on a RAM block device, installs a running
version (the base install, or a confirmed slot), then runs an update to the next version: manifest,
chunks of random sizes with lost answers and resets in between (resumed from flash), final checks,
the switch at a reset, then either the confirmation or a rollback. Power fails at a random block
write (the write in progress lands only partly). The flash that is left is mounted again and
booted: the slot chosen must hold one complete version, old or new, every file intact. The update is
then carried on from there to its end. Prints one JSON summary.
"""

import hashlib
import json
import random
import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib", _root, _root + "/tests/unit", _root + "/tests/port/mp"]

import edsign  # noqa: E402
from firmware import slots  # noqa: E402
from firmware.staging import Stager, UpdateError  # noqa: E402
from ramflash import PowerCut, RamFlash, mount, umount  # noqa: E402

_BS = const(512)  # noqa: F821 - micropython builtin
_BLOCKS = const(256)  # noqa: F821
_MOUNT = "/pcut"
_MAX_CUT = 100  # an update here takes 80-115 block writes: most trials are cut somewhere
SEED = bytes(range(32))
PUB = edsign.public(SEED)


def _hexs(b):
    return "".join("%02x" % x for x in b)


def version_files(ver):
    """The code of one version: a version module and a few files of random sizes (deterministic per ver)."""
    files = {"firmware/__init__.mpy": ("VERSION = %r\n" % ver).encode()}
    for i, name in enumerate(("firmware/m0.mpy", "firmware/m1.mpy", "firmware/m2.mpy", "lib/umqtt/simple.mpy")):
        data = b""
        block = hashlib.sha256(("%s/%d" % (ver, i)).encode()).digest()
        size = 150 + (block[0] << 3)
        while len(data) < size:
            block = hashlib.sha256(block).digest()
            data += block
        files[name] = data[:size]
    return files


_bundles = {}


def bundle(ver, rng):
    if ver not in _bundles:
        _bundles[ver] = _bundle(ver)
    return _bundles[ver]


def _bundle(ver):
    files = version_files(ver)
    entries = [[p, len(d), _hexs(hashlib.sha256(d).digest())] for p, d in sorted(files.items())]
    manifest = json.dumps({"app": "bdmeter", "ver": ver, "files": entries}).encode()
    return {"ver": ver, "msize": len(manifest), "sig": _hexs(edsign.sign(SEED, manifest))}, manifest, files


def install(root, slot, files):
    d = slots.slot_dir(root, slot)
    try:
        vfs_mkdir(d)
    except OSError:
        pass
    for path, data in files.items():
        cur = d
        for part in path.split("/")[:-1]:
            cur += "/" + part
            try:
                vfs_mkdir(cur)
            except OSError:
                pass
        with open(d + "/" + path, "wb") as f:
            f.write(data)


def vfs_mkdir(p):
    import os

    os.mkdir(p)


def slot_version(root, slot, known):
    """The version whose every file the slot holds intact, or a description of what is wrong."""
    d = slots.slot_dir(root, slot)
    try:
        with open(d + "/firmware/__init__.mpy", "rb") as f:
            head = f.read()
    except OSError as e:
        return None, "no version module in %s: %r" % (slot, e)
    for ver, files in known.items():
        if head == files["firmware/__init__.mpy"]:
            for path, data in files.items():
                try:
                    with open(d + "/" + path, "rb") as f:
                        if f.read() != data:
                            return None, "%s: %s differs" % (slot, path)
                except OSError:
                    return None, "%s: %s missing" % (slot, path)
            return ver, None
    return None, "%s holds an unknown version module" % slot


def run_update(root, running, offer, manifest, files, rng, resets=True):
    """Drive one update from wherever the flash says it stands; returns the staged slot."""
    st = Stager(root, PUB, running)
    if not (st.pending() and st.same(offer)):
        st.take_manifest(offer, manifest)
    for _ in range(2000):
        req = st.next_request(rng.choice((64, 200, 512, 1024)))
        if req is None:
            break
        path, off, n = req
        if rng.random() < 0.05:
            continue  # the answer was lost on the link: ask again
        if resets and rng.random() < 0.03:
            st = Stager(root, PUB, running)  # a reset mid-download: resume from flash
            assert st.pending() and st.same(offer)
            continue
        st.accept(path, off, files[path][off:off + n])
    return st.finish()


def scenario(rng, dev_budget):
    """One trial; returns (cut happened, problems)."""
    dev = RamFlash(_BLOCKS, bs=_BS)
    mount(dev, _MOUNT, mkfs=True)
    root = _MOUNT
    start_on_slot = rng.random() < 0.5
    old = "0.2.0" if start_on_slot else "0.1.0"
    new = "0.3.0" if start_on_slot else "0.2.0"
    known = {v: version_files(v) for v in ("0.1.0", "0.2.0", "0.3.0")}
    install(root, slots.BASE, known["0.1.0"])
    running = slots.BASE
    if start_on_slot:
        install(root, "b", known["0.2.0"])
        with open(root + "/app_b/.ok", "w") as f:
            f.write("0.2.0")
        slots.write(root, {"confirmed": "b", "ver": "0.2.0"})
        running = "b"
    offer, manifest, files = bundle(new, rng)
    confirm = rng.random() < 0.7
    dev.budget = dev.writes + dev_budget
    dev.rng = rng
    phase = "download"
    try:
        slot = run_update(root, running, offer, manifest, files, rng)
        phase = "switch"
        chosen, _ = slots.boot(root)
        assert chosen == slot
        phase = "trial"
        if confirm:
            slots.confirm(root, chosen)
        else:
            slots.boot(root)  # never confirmed: the next reset rolls back
        phase = "after"
        slots.boot(root)
    except (PowerCut, OSError) as e:
        if not dev.dead:
            umount(_MOUNT)
            return False, ["workload failed in %s before any cut: %r" % (phase, e)]
    except UpdateError as e:
        umount(_MOUNT)
        return False, ["update refused in %s: %r" % (phase, e)]
    cut = dev.dead
    umount(_MOUNT)
    # power back: boot what reached the flash
    dev2 = RamFlash(_BLOCKS, dev.data, bs=_BS)
    problems = []
    try:
        mount(dev2, _MOUNT)
        chosen, st = slots.boot(root)
        ver, why = slot_version(root, chosen, known)
        if why:
            problems.append("cut in %s: boots %s: %s" % (phase, chosen, why))
        elif ver not in (old, new):
            problems.append("cut in %s: boots %s, neither %s nor %s" % (phase, ver, old, new))
        if not problems and confirm:
            # carry on: whatever was interrupted, the update completes and sticks
            if chosen != st.get("trial") and ver != new:
                slot = run_update(root, chosen, offer, manifest, files, rng, resets=False)
                chosen, st = slots.boot(root)
            if ver != new or st.get("trial"):
                slots.confirm(root, chosen)
            chosen, st = slots.boot(root)
            ver, why = slot_version(root, chosen, known)
            if ver != new:
                problems.append("cut in %s: after resuming boots %s (%s), not %s" % (phase, ver, why, new))
    except Exception as e:  # any failure to mount, boot or resume is what we are looking for
        problems.append("cut in %s: after the cut: %r" % (phase, e))
    umount(_MOUNT)
    return cut, problems


class _Rng:
    """random.Random's few methods over the module's generator (MicroPython has no Random class)."""

    def __init__(self, seed):
        random.seed(seed)

    def random(self):
        return random.random()

    def randint(self, a, b):
        return random.randint(a, b)

    def choice(self, seq):
        return seq[random.randint(0, len(seq) - 1)]


def main(trials, seed):
    rng = _Rng(seed)
    cuts = failures = 0
    first = []
    for _ in range(trials):
        budget = rng.randint(1, _MAX_CUT)
        cut, problems = scenario(rng, budget)
        cuts += cut
        if problems:
            failures += 1
            if len(first) < 5:
                first.append({"budget": budget, "problems": problems})
    print(json.dumps({"trials": trials, "cut_points": cuts, "failures": failures, "examples": first}))
    print("%d passed, %d failed" % (trials - failures, failures))


main(int(sys.argv[1]), int(sys.argv[2]))
