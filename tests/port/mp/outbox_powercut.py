"""Power cuts under the outbox, on littlefs: a block device that stops writing after N block writes.

    micropython tests/port/mp/outbox_powercut.py <trials> <seed>

Each trial formats a fresh littlefs (vfs.VfsLfs2) on a RAM block device,
runs puts and acks until the device "loses power" at a random block write
(the write in progress lands only partly), then remounts a copy of what
reached the flash and checks: the filesystem mounts, the outbox opens,
no record is corrupt, every record whose put had returned (and whose ack had
not begun) is there, and no sequence number is reused. Prints one JSON summary.
"""

import json
import random
import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib", _root]

import vfs  # noqa: E402

from firmware.outbox import Outbox  # noqa: E402

_BS = const(512)  # noqa: F821 - micropython builtin
_BLOCKS = const(256)  # noqa: F821
_MOUNT = "/pcut"


class PowerCut(Exception):
    pass


class CutDevice:
    """littlefs block device whose power fails at write number `budget` (that write lands partly)."""

    def __init__(self, data=None, budget=None, rng=None):
        self.data = bytearray(data) if data is not None else bytearray(b"\xff" * (_BS * _BLOCKS))
        self.budget = budget
        self.writes = 0
        self.rng = rng
        self.dead = False

    # Once dead, reads and writes do nothing and allocate nothing: file finalisers may still run them
    # during garbage collection, with the heap locked.
    def readblocks(self, block, buf, off=0):
        if self.dead:
            return
        s = block * _BS + off
        buf[:] = self.data[s:s + len(buf)]

    def writeblocks(self, block, buf, off=None):
        if self.dead:
            return
        s = block * _BS + (off or 0)
        self.writes += 1
        if self.budget is not None and self.writes >= self.budget:
            n = self.rng.randint(0, len(buf))  # the write in progress when power fails lands partly
            self.data[s:s + n] = buf[:n]
            self.dead = True
            raise PowerCut()
        self.data[s:s + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return _BLOCKS
        if op == 5:
            return _BS
        if op == 6:  # erase: littlefs erases before programming
            if self.dead:
                return 0
            s = arg * _BS
            self.data[s:s + _BS] = b"\xff" * _BS
            return 0
        return 0


def _mount(dev):
    vfs.mount(vfs.VfsLfs2(dev), _MOUNT)


def _umount():
    try:
        vfs.umount(_MOUNT)
    except OSError:
        pass


def trial(rng, budget):
    dev = CutDevice()
    vfs.VfsLfs2.mkfs(dev)
    _mount(dev)
    dev.budget = budget
    dev.rng = rng
    model = []  # what the outbox must hold: puts that returned, minus acks that returned, ring-bounded
    highest = 0
    acking = None
    putting = None
    try:
        ob = Outbox(_MOUNT + "/state", capacity=12)
        for _ in range(400):
            if ob.peek(1) and rng.random() < 0.4:
                seq = ob.peek(1)[0][0]
                acking = seq
                ob.ack(seq)
                model.remove(seq)
                acking = None
            else:
                putting = ob.next_seq
                seq = ob.put("energy", {"kwh": {"fwd": rng.random() * 1000}, "pad": "x" * rng.randint(0, 200)})
                model.append(seq)
                highest = seq
                while len(model) > 12:
                    model.pop(0)
                putting = None
    except (PowerCut, OSError) as e:
        # closing files on the dead device fails too (EILSEQ): what matters is that power was cut
        if not dev.dead:
            _umount()
            return False, ["workload failed before any cut: %r" % (e,)], None
    cut = dev.dead
    _umount()
    # power back: mount what reached the flash
    dev2 = CutDevice(dev.data)
    _mount(dev2)
    try:
        ob = Outbox(_MOUNT + "/state", capacity=12)
        recs = ob.peek(1000)
        present = [r[0] for r in recs]
        problems = []
        if ob.corrupt:
            problems.append("corrupt records: %d" % ob.corrupt)
        if present != sorted(present):
            problems.append("out of order")
        # an ack in flight may or may not have landed; a put in flight may have dropped the oldest already
        must = [s for s in model if s != acking]
        if putting is not None and len(model) == 12:
            must = must[1:]
        missing = [s for s in must if s not in present]
        if missing:
            problems.append("lost %s (present %s)" % (missing, present))
        extra = [s for s in present if s not in model and s != putting and s != acking]
        if extra:
            problems.append("resurrected %s" % extra)
        if ob.next_seq <= highest:
            problems.append("seq reuse: next %d <= %d" % (ob.next_seq, highest))
        ob.put("event", {"kind": "reboot"})  # the outbox still works after the cut
    except Exception as e:  # any failure to mount or open is what we are looking for
        problems = ["after cut: %r" % (e,)]
    _umount()
    return cut, problems, putting


def main(trials, seed):
    rng = random.Random(seed) if hasattr(random, "Random") else None
    if rng is None:
        random.seed(seed)
        rng = random
    cuts = failures = 0
    first = []
    for _ in range(trials):
        budget = rng.randint(1, 600)
        cut, problems, _ = trial(rng, budget)
        cuts += cut
        if problems:
            failures += 1
            if len(first) < 5:
                first.append({"budget": budget, "problems": problems})
    print(json.dumps({"trials": trials, "cut_points": cuts, "failures": failures, "examples": first}))
    print("%d passed, %d failed" % (trials - failures, failures))


main(int(sys.argv[1]), int(sys.argv[2]))
