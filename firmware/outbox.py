"""Persistent outbox: every record is on flash, with its sequence number and a CRC, before it is sent.

One file per record, written to a temp file and renamed into place, so a
power cut at any instant leaves either no record or the whole record. A record
leaves only when `ack` is called after the broker's PUBACK. The ring is
bounded: when full, the oldest record is dropped and counted.

Sequence numbers never repeat, across reboots too. The next number is one past
the highest of (the newest record on flash, the saved counter); the counter is
written only when the newest record is acknowledged, since until then the
record itself carries the number: one flash write per record, not two.
"""

import json
import os

from binascii import crc32

_SUFFIX = ".r"
_TMP = ".tmp"


class Outbox:
    def __init__(self, root, capacity=1000, log=None, encode=None):
        self.dir = root + "/outbox"
        self.encode = encode or _compact
        self.capacity = capacity
        self.log = log
        self.dropped = 0  # records dropped because the ring was full
        self.corrupt = 0  # records whose CRC failed on read (quarantined)
        makedirs(self.dir)
        seqs = []
        for name in os.listdir(self.dir):
            if name.endswith(_TMP):
                os.remove(self.dir + "/" + name)  # a write cut short: it never existed
            elif name.endswith(_SUFFIX):
                try:
                    seqs.append(int(name[: -len(_SUFFIX)]))
                except ValueError:
                    pass
        seqs.sort()
        self._seqs = seqs
        self.next_seq = max(self._load_counter(), seqs[-1] if seqs else 0) + 1

    def __len__(self):
        return len(self._seqs)

    def _path(self, seq):
        return "%s/%010d%s" % (self.dir, seq, _SUFFIX)

    def _load_counter(self):
        try:
            with open(self.dir + "/seq") as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def _save_counter(self, seq):
        tmp = self.dir + "/seq" + _TMP
        with open(tmp, "w") as f:
            f.write(str(seq))
        os.rename(tmp, self.dir + "/seq")

    def put(self, kind, body):
        """Store a record of `kind` ('energy', 'event', 'register'); its `seq` is set in body. Returns seq."""
        seq = self.next_seq
        body["seq"] = seq
        text = kind + " " + self.encode(body)
        tmp = self._path(seq) + _TMP
        with open(tmp, "w") as f:
            f.write("%08x %s" % (crc32(text.encode()) & 0xFFFFFFFF, text))
        os.rename(tmp, self._path(seq))
        self.next_seq = seq + 1
        self._seqs.append(seq)
        while len(self._seqs) > self.capacity:
            self._remove(self._seqs[0])
            self.dropped += 1
        return seq

    def peek(self, limit=1):
        """Up to `limit` oldest records as (seq, kind, payload text), oldest first. Corrupt ones are set aside."""
        out = []
        i = 0
        while i < len(self._seqs) and len(out) < limit:
            seq = self._seqs[i]
            rec = self._read(seq)
            if rec is None:
                continue  # _read removed it from the list
            out.append(rec)
            i += 1
        return out

    def _read(self, seq):
        try:
            with open(self._path(seq)) as f:
                raw = f.read()
            crc, _, text = raw.partition(" ")
            if int(crc, 16) != crc32(text.encode()) & 0xFFFFFFFF:
                raise ValueError("crc")
            kind, _, payload = text.partition(" ")
            return seq, kind, payload
        except (OSError, ValueError) as e:
            self.corrupt += 1
            if self.log:
                self.log.error("outbox record %d unreadable (%s): set aside", seq, e)
            try:
                os.rename(self._path(seq), self._path(seq) + ".bad")
            except OSError:
                pass
            self._seqs.remove(seq)
            return None

    def ack(self, seq):
        """The broker has the record: remove it from flash."""
        if seq not in self._seqs:
            return
        if seq == self._seqs[-1]:
            self._save_counter(seq)  # the last record that carried the highest number
        self._remove(seq)

    def _remove(self, seq):
        try:
            os.remove(self._path(seq))
        except OSError:
            pass
        self._seqs.remove(seq)


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
