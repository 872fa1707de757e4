"""A littlefs block device in RAM for the port proofs: counts what it programs and can lose power at a given write.

A device made with `budget` fails at block write number `budget`: the write in
progress lands only partly (a random prefix), PowerCut is raised, and from then
on reads and writes do nothing and allocate nothing (file finalisers may still
call them during garbage collection, with the heap locked).
"""

import vfs

BS = const(4096)  # noqa: F821 - micropython builtin: the ESP32/RP2 flash sector


class PowerCut(Exception):
    pass


class RamFlash:
    def __init__(self, blocks, data=None, budget=None, rng=None, bs=BS):
        self.blocks = blocks
        self.bs = bs
        self._erased = b"\xff" * bs
        if data is None:
            self.data = bytearray(bs * blocks)
            for b in range(blocks):  # erased flash, without a second whole-device buffer
                self.data[b * bs:(b + 1) * bs] = self._erased
        else:
            self.data = bytearray(data)
        self.budget = budget
        self.rng = rng
        self.writes = 0  # block writes
        self.written = 0  # bytes programmed
        self.erased = 0  # blocks erased
        self.dead = False

    def readblocks(self, block, buf, off=0):
        if self.dead:
            return
        s = block * self.bs + off
        buf[:] = self.data[s:s + len(buf)]

    def writeblocks(self, block, buf, off=None):
        if self.dead:
            return
        s = block * self.bs + (off or 0)
        self.writes += 1
        if self.budget is not None and self.writes >= self.budget:
            n = self.rng.randint(0, len(buf))
            self.data[s:s + n] = buf[:n]
            self.dead = True
            raise PowerCut()
        self.data[s:s + len(buf)] = buf
        self.written += len(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return self.bs
        if op == 6:  # erase: littlefs erases before programming
            if not self.dead:
                self.erased += 1
                s = arg * self.bs
                self.data[s:s + self.bs] = self._erased
            return 0
        return 0


def mount(dev, point, opts=None, mkfs=False):
    """Mount `dev` at `point` as littlefs v2 (formatting it first with `mkfs`)."""
    opts = opts or {}
    if mkfs:
        vfs.VfsLfs2.mkfs(dev, **opts)
    vfs.mount(vfs.VfsLfs2(dev, **opts), point)


def umount(point):
    """Unmount `point`; a device that lost power may refuse, which is what the proofs expect."""
    try:
        vfs.umount(point)
    except OSError:
        pass
