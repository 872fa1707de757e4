"""Power cuts under the outbox, on littlefs: a block device that stops writing after N block writes.

    micropython -X heapsize=8M tests/port/mp/outbox_powercut.py <cut points> <seed>

Trials run until <cut points> of them were cut. Each trial formats a fresh
littlefs (vfs.VfsLfs2, 4 KB blocks, ESP32 or RP2 settings) on a RAM block
device, small enough that some trials fill it, runs
puts and acks until the device "loses power" at a random block write (the write
in progress lands only partly), then remounts a copy of what reached the flash
and checks: the filesystem mounts, the outbox opens with its incarnation, no
record is damaged, every record after the head whose put had returned is there
in order, every record that went was acknowledged or counted as dropped, nothing
acknowledged comes back, and no sequence number is reused. Prints one JSON summary.
"""

import gc
import json
import random
import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib", _root, _root + "/tests/port/mp"]

import ramflash  # noqa: E402
from firmware.outbox import Outbox  # noqa: E402
from ramflash import PowerCut, RamFlash  # noqa: E402

_MOUNT = "/pcut"
_SETTINGS = ({}, {"progsize": 256})  # ESP32 (VfsLfs2 defaults), RP2 (rp2.Flash needs 256-byte programs)


def _mount(dev, opts, mkfs=False):
    ramflash.mount(dev, _MOUNT, opts, mkfs)


def _umount():
    ramflash.umount(_MOUNT)


def _open(cap):
    return Outbox(_MOUNT + "/state", capacity=cap, reserve=16384)


def trial(rng, budget):
    opts = _SETTINGS[rng.randint(0, 1)]
    blocks = rng.choice((16, 24, 64))  # 64 and 96 KB fill up in many trials, 256 KB rarely
    cap = rng.choice((12, 1000))
    ack_p = rng.choice((0.05, 0.4))
    dev = RamFlash(blocks)
    _mount(dev, opts, mkfs=True)
    dev.budget = budget
    dev.rng = rng
    model = []  # seqs of returned puts, not acknowledged, not dropped: what the outbox must hold
    highest = 0
    acking = putting = None
    inc = None
    dropped = 0  # the drop counter after the last operation that returned
    try:
        ob = _open(cap)
        inc = ob.inc
        dropped = ob.dropped
        for _ in range(400):
            # The outbox counts and survives failed writes, so a cut may not raise out of it: an operation
            # during which the device died is the one in flight, whatever it returned.
            if model and rng.random() < ack_p:
                acking = model[0]
                ob.ack(acking)
                if dev.dead:
                    break
                model.pop(0)
                acking = None
            else:
                putting = ob.next_seq
                seq = ob.put("energy", {"kwh": {"fwd": rng.random() * 1000}, "pad": "x" * rng.randint(100, 200)})
                if dev.dead:
                    break
                if seq is not None:
                    model.append(seq)
                highest = putting
                putting = None
            model = [s for s in model if s > ob.acked]
            dropped = ob.dropped
    except (PowerCut, OSError) as e:
        # closing files on the dead device fails too (EILSEQ): what matters is that power was cut
        if not dev.dead:
            _umount()
            return False, ["workload failed before any cut: %r" % (e,)], False
    cut = dev.dead
    full = cap == 1000 and dropped > 0  # drops with a ring this large: the flash filled up
    _umount()
    # power back: mount what reached the flash
    dev2 = RamFlash(blocks, dev.data)
    _mount(dev2, opts)
    problems = []
    try:
        ob = _open(cap)
        present = [r[0] for r in ob.peek(100000)]
        if ob.corrupt:
            problems.append("damaged records: %d" % ob.corrupt)
        if inc is not None and ob.inc != inc:
            problems.append("incarnation changed %s -> %s" % (inc, ob.inc))
        if any(b <= a for a, b in zip(present, present[1:])):
            problems.append("out of order %s" % present)
        cands = model + ([putting] if putting is not None else [])
        extra = [s for s in present if s not in cands]
        if extra:
            problems.append("resurrected %s" % extra)
        missing = [s for s in model if s > ob.acked and s not in present]
        if missing:
            problems.append("lost %s (present %s)" % (missing, present))
        gone = [s for s in cands if s <= ob.acked and s != acking]
        if ob.dropped - dropped != len(gone):
            problems.append("drops not counted: %d gone (%s), counter %d -> %d" % (len(gone), gone, dropped,
                                                                                 ob.dropped))
        if acking is not None and ob.acked > acking:
            problems.append("ack of %d moved the head to %d" % (acking, ob.acked))
        if ob.next_seq <= highest or (putting is not None and putting in present and ob.next_seq <= putting):
            problems.append("seq reuse: next %d <= %d" % (ob.next_seq, highest))
        if ob.put("event", {"kind": "reboot"}) is None:  # the outbox still works after the cut
            problems.append("boot event not stored after the cut")
    except Exception as e:  # any failure to mount or open is what we are looking for
        problems.append("after cut: %r" % (e,))
    _umount()
    return cut, problems, full


def main(want, seed):
    rng = random.Random(seed) if hasattr(random, "Random") else None
    if rng is None:
        random.seed(seed)
        rng = random
    cuts = failures = fulls = 0
    first = []
    trials = 0
    while cuts < want and trials < 2 * want:  # until `want` trials were cut at a random write
        gc.collect()
        trials += 1
        budget = rng.randint(1, 1500)
        cut, problems, full = trial(rng, budget)
        cuts += cut
        fulls += full
        if problems:
            failures += 1
            if len(first) < 5:
                first.append({"budget": budget, "problems": problems})
    print(json.dumps({"trials": trials, "cut_points": cuts, "failures": failures,
                      "flash_filled": fulls, "examples": first}))
    print("%d passed, %d failed" % (trials - failures, failures))


main(int(sys.argv[1]), int(sys.argv[2]))
