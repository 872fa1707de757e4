"""Persistent outbox: every record is on flash, with its incarnation, sequence number and a CRC, before it is sent.

Records are lines appended to segment files (firmware/segments.py) of about one
flash block each; a small head file, replaced atomically, holds the outbox's
incarnation id, the highest seq acknowledged (or dropped), the drop counter and
how many drops were reported. A segment is deleted once every record in it is
behind the head. A record leaves only when `ack` is called after the broker's
PUBACK. A damaged record (its line fails the CRC) is skipped and counted, and goes with its segment.

The ring is bounded by count (`capacity`) and by flash: before a new segment is
started, the oldest segments go (counted as dropped) until the filesystem keeps
`reserve` bytes free for everything else (boot notes, config saves). A write
that fails (a full flash) is counted, the oldest segment is dropped and the
write tried once more in a fresh segment; a record that still cannot be stored
is counted as dropped. `put` never raises OSError, so a full flash cannot stop
the terminal or its uplink.

Sequence numbers never repeat within an incarnation: the next is one past the
highest of (the head, the newest record on flash). A new incarnation (random
8 hex digits) is made only with a new outbox (no head file on flash).
"""

import json
import os

from binascii import hexlify

from firmware import segments

_HEAD = "head"
_TMP = ".tmp"
_SEG_MIN = 1024
_SEG_MAX = 8192
OVERFLOW_EVERY_S = 3600  # outbox_overflow events at most hourly: each one is itself a record


class Outbox:
    def __init__(self, root, capacity=1000, log=None, encode=None, reserve=32768, free=None):
        self.dir = root + "/outbox"
        self.encode = encode or _compact
        self.capacity = capacity
        self.reserve = reserve
        self.log = log
        self._free = free or _statvfs_free
        self.dropped = 0  # records dropped (ring full, flash full, unwritable), since the outbox was created
        self.reported = 0  # how many of those an outbox_overflow event has reported
        self.corrupt = 0  # records found damaged on flash (skipped, their segment deleted with it)
        self.write_fail = 0  # flash writes that failed (each followed by dropping the oldest and one retry)
        self.acked = 0  # every seq up to this one is acknowledged or dropped
        self.inc = None
        self._segs = []  # [first seq, last seq] of each segment file, oldest first
        self._tail = None  # the newest segment while it takes appends (None: the next put starts one)
        self._tail_size = 0
        self._bad_seen = set()
        self._overflow_at = None  # uptime of the last overflow report
        makedirs(self.dir)
        self.seg_bytes = self._segment_size()
        self._open()

    # -- state on flash ------------------------------------------------------
    def _segment_size(self):
        try:
            bs = os.statvfs(self.dir)[0]
        except (OSError, AttributeError):
            bs = 4096
        return min(max(bs, _SEG_MIN), _SEG_MAX)

    def _p(self, name):
        return self.dir + "/" + name

    def _open(self):
        try:
            names = os.listdir(self.dir)
        except OSError:
            names = []
        fresh = not self._load_head()
        legacy = []
        firsts = []
        for name in names:
            if name.endswith(_TMP) or name.endswith(".bad"):
                segments.remove(self._p(name))  # a write cut short, or something set aside by an older version
            elif name.endswith(".r") or name == "seq":
                legacy.append(name)
            else:
                f = segments.first_of(name)
                if f is not None:
                    firsts.append(f)
        firsts.sort()
        top = self.acked
        for f in firsts:
            path = self._p(segments.name(f))
            try:
                _, last, good, bad, size, tail_ok = segments.scan(path)
            except OSError:
                last, good, bad, size, tail_ok = None, 0, 1, 0, False
            self.corrupt += bad
            if good and last > top:
                top = last
            if not good or last <= self.acked:
                segments.remove(path)  # all behind the head, or nothing readable in it
                continue
            self._segs.append([f, last])
            self._tail, self._tail_size = (f, size) if tail_ok else (None, 0)
        if legacy:
            top = max(top, self._migrate(legacy))
        self.next_seq = top + 1
        if fresh:
            # a head lost while records remain: they name the incarnation (the newest holds the highest seq)
            self.inc = self._inc_of_newest() or _new_inc()
            if self.log:
                self.log.info("outbox: incarnation %s", self.inc)
        if fresh or legacy:
            self._save_head()
        if not self._segs or self._tail != self._segs[-1][0]:
            self._tail = None

    def _inc_of_newest(self):
        if not self._segs:
            return None
        try:
            recs, _ = segments.records(self._p(segments.name(self._segs[-1][0])), 0, 1000, set(), None)
            inc = json.loads(recs[-1][2]).get("inc")
        except (OSError, ValueError, IndexError, AttributeError):
            return None
        return inc if isinstance(inc, str) and len(inc) == 8 else None

    def _load_head(self):
        try:
            with open(self._p(_HEAD)) as f:
                parts = f.read().split()
            inc = parts[0]
            if len(inc) != 8 or int(inc, 16) < 0 or inc != inc.lower():
                raise ValueError("inc")
            self.acked, self.dropped, self.reported = int(parts[1]), int(parts[2]), int(parts[3])
            self.inc = inc
            return True
        except (OSError, ValueError, IndexError):
            return False

    def _save_head(self):
        """Write the head atomically; False (counted) when the flash refuses."""
        tmp = self._p(_HEAD + _TMP)
        try:
            with open(tmp, "w") as f:
                f.write("%s %d %d %d\n" % (self.inc, self.acked, self.dropped, self.reported))
            os.rename(tmp, self._p(_HEAD))
            return True
        except OSError as e:
            self.write_fail += 1
            if self.log:
                self.log.error("outbox head not saved: %s", e)
            return False

    def _migrate(self, names):
        """Records of the one-file-per-record layout go into one segment; returns the highest seq seen."""
        top = 0
        try:
            with open(self._p("seq")) as f:
                top = int(f.read())
        except (OSError, ValueError):
            pass
        recs = []
        for name in sorted(names):
            if name == "seq":
                continue
            try:
                with open(self._p(name)) as f:
                    crc, _, text = f.read().partition(" ")
                kind, _, payload = text.partition(" ")
                seq = int(name[:-2])
                if int(crc, 16) == segments.crc32(text.encode()) & 0xFFFFFFFF and seq > self.acked:
                    recs.append(segments.line(seq, kind, payload))
                top = max(top, seq)
            except (OSError, ValueError):
                self.corrupt += 1
        if recs:
            first = segments.parse(recs[0])[0]
            if not self._segs or first > self._segs[-1][1]:
                tmp = self._p(segments.name(first) + _TMP)
                try:
                    segments.write(tmp, b"".join(recs), True)
                    os.rename(tmp, self._p(segments.name(first)))
                    self._segs.append([first, segments.parse(recs[-1])[0]])
                    self._tail = None
                except OSError:
                    return top  # keep the old files for the next boot
        for name in names:
            segments.remove(self._p(name))
        return top

    # -- the ring ------------------------------------------------------------
    def __len__(self):
        n = 0
        for first, last in self._segs:
            if last > self.acked:
                n += last - max(first, self.acked + 1) + 1
        return n

    def put(self, kind, body):
        """Store a record of `kind` ('energy', 'event', 'register') with `inc` and `seq` set in body.

        Returns its seq, or None when the record could not be stored (counted in `dropped`).
        """
        seq = self.next_seq
        self.next_seq = seq + 1  # taken even if the write fails: the gap is the drop the server sees
        body["inc"] = self.inc
        body["seq"] = seq
        data = segments.line(seq, kind, self.encode(body))
        for attempt in (0, 1):
            try:
                new = self._tail is None or self._tail_size + len(data) > self.seg_bytes
                if new and not self._make_room():
                    break
                segments.write(self._p(segments.name(seq if new else self._tail)), data, new)
            except OSError as e:
                self.write_fail += 1
                if self.log:
                    self.log.error("outbox write of record %d failed (%s)%s", seq, e,
                                   "; dropping the oldest and retrying" if not attempt else "")
                self._tail = None  # what the failed write left is not appended to
                if not attempt:
                    self._drop_segment()
                continue
            if new:
                self._segs.append([seq, seq])
                self._tail, self._tail_size = seq, 0
            self._segs[-1][1] = seq
            self._tail_size += len(data)
            if len(self) > self.capacity:
                self._drop_records(len(self) - self.capacity)
            return seq
        self.dropped += 1
        if self.log:
            self.log.error("outbox: record %d not stored (flash full); counted as dropped", seq)
        self._save_head()
        return None

    def _make_room(self):
        """Drop oldest segments until a new one fits above the reserve; False when it cannot."""
        while True:
            free = self._free(self.dir)
            if free is None or free >= self.seg_bytes + self.reserve:
                return True
            if not self._drop_segment():
                return False

    def _drop_segment(self):
        """Drop the oldest segment whole, counting its unacknowledged records. False when there is none."""
        if not self._segs:
            return False
        first, last = self._segs[0]
        n = last - max(first, self.acked + 1) + 1
        if n > 0:
            self.dropped += n
            self.acked = last
        if self.log:
            self.log.error("outbox: flash full, %d oldest record(s) dropped", max(n, 0))
        if not self._save_head() and len(self._segs) == 1:
            return False  # the only segment left carries the highest seq while the head cannot: keep it
        self._forget(0)  # a newer segment still carries the highest seq if the head was not saved
        return True

    def _drop_records(self, n):
        """Drop the `n` oldest records (the ring is full by count)."""
        self.acked = self._nth_unacked(n)
        self.dropped += n
        if self.log:
            self.log.error("outbox full: %d oldest record(s) dropped", n)
        self._trim()

    def _nth_unacked(self, n):
        for first, last in self._segs:
            lo = max(first, self.acked + 1)
            if last >= lo:
                if last - lo + 1 >= n:
                    return lo + n - 1
                n -= last - lo + 1
        return self._segs[-1][1] if self._segs else self.acked

    def _trim(self):
        """Persist the head, then delete segments wholly behind it."""
        if not self._save_head():
            return
        while self._segs and self._segs[0][1] <= self.acked:
            self._forget(0)

    def _forget(self, i):
        first = self._segs.pop(i)[0]
        segments.remove(self._p(segments.name(first)))
        if first == self._tail:
            self._tail = None
        if self._bad_seen:
            self._bad_seen = set(k for k in self._bad_seen if k[0] != first)

    def peek(self, limit=1):
        """Up to `limit` oldest records as (seq, kind, payload text), oldest first. Damaged lines are skipped."""
        out = []
        i = 0
        while i < len(self._segs) and len(out) < limit:
            first, last = self._segs[i]
            if last <= self.acked:
                i += 1
                continue
            try:
                recs, bad = segments.records(self._p(segments.name(first)), self.acked, limit - len(out),
                                             self._bad_seen, first)
            except OSError as e:
                self._unreadable(i, e)
                continue
            if bad:
                self.corrupt += bad
                if self.log:
                    self.log.error("outbox segment %d: %d damaged record(s) skipped", first, bad)
            out.extend(recs)
            i += 1
        return out

    def _unreadable(self, i, e):
        first, last = self._segs[i]
        n = last - max(first, self.acked + 1) + 1
        self.corrupt += n
        if self.log:
            self.log.error("outbox segment %d unreadable (%s): %d record(s) lost", first, e, n)
        if i == 0:
            self.acked = max(self.acked, last)
            self._save_head()
        self._forget(i)

    def ack(self, seq):
        """The broker has every record up to `seq`: move the head, delete segments wholly behind it."""
        if seq <= self.acked:
            return
        self.acked = seq
        self._trim()

    def overflow_due(self, now_s):
        """(new, total) drops to report in an outbox_overflow event, at most once per OVERFLOW_EVERY_S; else None.

        Marks them reported (on flash with the head), so drops from before a reboot are reported after it.
        """
        new = self.dropped - self.reported
        if new <= 0 or (self._overflow_at is not None and now_s - self._overflow_at < OVERFLOW_EVERY_S):
            return None
        self._overflow_at = now_s
        self.reported = self.dropped
        self._save_head()
        return new, self.dropped


def _new_inc():
    try:
        raw = os.urandom(4)
    except (AttributeError, NotImplementedError):
        import random

        raw = bytes(random.getrandbits(8) for _ in range(4))
    return hexlify(raw).decode()


def _statvfs_free(path):
    try:
        st = os.statvfs(path)
        if st[3] > st[2]:
            return None  # littlefs can count blocks twice right after a write the flash refused: not a figure
        return st[0] * st[3]
    except (OSError, AttributeError):
        return None


def _compact(body):
    return json.dumps(body, separators=(",", ":"))


def makedirs(path):
    cur = ""
    for part in path.split("/"):
        if not part:
            cur = "/" if not cur else cur
            continue
        cur = cur + part if cur.endswith("/") or not cur else cur + "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass
