"""The persistent outbox: order, incarnation and seq over reboots, ring bounded by count and flash, CRC, torn writes."""

import json
import os

from portable import rmtree, scratch

from firmware import segments
from firmware.outbox import Outbox


def _d(name):
    return scratch("outbox-" + name)


def _files(d):
    return sorted(os.listdir(d + "/outbox"))


def _body(i, pad=180):
    return {"v": 2, "ts": 1795430400 + i, "meter": "000072007201", "kwh": {"fwd": i}, "pad": "x" * pad}


def test_put_peek_ack_in_order():
    d = _d("order")
    ob = Outbox(d, capacity=10)
    assert ob.put("energy", {"kwh": {"fwd": 1.5}}) == 1
    assert ob.put("event", {"kind": "reboot"}) == 2
    recs = ob.peek(5)
    assert [r[0] for r in recs] == [1, 2]
    assert recs[0][1] == "energy" and '"seq":1' in recs[0][2] and '"fwd":1.5' in recs[0][2]
    ob.ack(1)
    assert [r[0] for r in ob.peek(5)] == [2]
    assert len(ob) == 1
    rmtree(d)


def test_every_record_carries_the_incarnation():
    # regression: after a state wipe seq restarted at 1 and the server dropped new records as duplicates
    d = _d("inc")
    ob = Outbox(d, capacity=10)
    inc = ob.inc
    assert len(inc) == 8 and inc == inc.lower() and int(inc, 16) >= 0
    ob.put("energy", {"kwh": {}})
    body = json.loads(ob.peek(1)[0][2])
    assert body["inc"] == inc and body["seq"] == 1
    assert Outbox(d, capacity=10).inc == inc  # kept on flash with the outbox
    rmtree(d)
    ob2 = Outbox(d, capacity=10)  # wiped state: a new outbox, a new incarnation, seq from 1
    assert ob2.inc != inc and ob2.put("energy", {}) == 1
    rmtree(d)


def test_lost_head_keeps_incarnation_from_the_records():
    d = _d("headless")
    ob = Outbox(d, capacity=10)
    inc = ob.inc
    for i in range(3):
        ob.put("energy", {"i": i})
    os.remove(d + "/outbox/head")
    ob = Outbox(d, capacity=10)
    assert ob.inc == inc and ob.put("energy", {}) == 4  # same incarnation, no seq reused
    rmtree(d)


def test_survives_reboot_and_never_reuses_seq():
    d = _d("reboot")
    ob = Outbox(d, capacity=10)
    for i in range(3):
        ob.put("energy", {"i": i})
    ob.ack(1)
    ob = Outbox(d, capacity=10)  # power cut and restart
    assert [r[0] for r in ob.peek(10)] == [2, 3]
    ob.ack(2)
    ob.ack(3)  # empty now: the head must remember 3
    ob = Outbox(d, capacity=10)
    assert len(ob) == 0
    assert ob.put("energy", {}) == 4
    rmtree(d)


def test_records_share_segment_files():
    # regression: one file per record cost a whole 4 KB flash block per 250-byte record on littlefs
    d = _d("pack")
    ob = Outbox(d, capacity=1000, free=lambda p: None)
    for i in range(100):
        ob.put("energy", _body(i))
    segs = [n for n in _files(d) if n.endswith(".s")]
    assert 5 <= len(segs) <= 10, segs  # about 4 KB each
    assert [r[0] for r in Outbox(d, capacity=1000).peek(200)] == list(range(1, 101))
    for seq in range(1, 101):
        ob.ack(seq)
    assert not [n for n in _files(d) if n.endswith(".s")]  # acknowledged segments are deleted
    rmtree(d)


def test_full_ring_drops_oldest_and_counts_across_reboots():
    # regression: the drop counter lived in RAM and restarted at 0 on boot
    d = _d("ring")
    ob = Outbox(d, capacity=3)
    for i in range(5):
        ob.put("energy", {"i": i})
    assert [r[0] for r in ob.peek(10)] == [3, 4, 5]
    assert ob.dropped == 2
    ob = Outbox(d, capacity=3)
    assert ob.dropped == 2 and [r[0] for r in ob.peek(10)] == [3, 4, 5]
    ob.put("energy", {})
    assert ob.dropped == 3
    rmtree(d)


def test_overflow_report_hourly_and_persisted():
    d = _d("overflow")
    ob = Outbox(d, capacity=2)
    assert ob.overflow_due(0) is None
    for i in range(5):
        ob.put("energy", {"i": i})
    assert ob.overflow_due(10) == (3, 3)
    ob.put("energy", {})
    assert ob.overflow_due(3000) is None  # within the hour
    ob.put("energy", {})
    assert ob.overflow_due(3610) == (2, 5)
    ob.put("energy", {})
    ob = Outbox(d, capacity=2)  # reboot: what was not reported yet is reported after it, the total goes on
    assert ob.dropped == 6 and ob.overflow_due(5) == (1, 6)
    rmtree(d)


def test_flash_full_drops_oldest_segments_keeps_reserve():
    # regression: a full flash raised OSError 28 out of put (a reboot loop at boot)
    d = _d("space")
    flash = 36864 + 4096 * 5  # room for the reserve, then five 4 KB segments

    def free(path):
        return flash - 4096 * len([n for n in _files(d) if n.endswith(".s")])

    ob = Outbox(d, capacity=100000, reserve=32768, free=free)
    ob.seg_bytes = 4096
    for i in range(150):
        ob.put("energy", _body(i))
        assert free(None) >= 32768 - 4096  # the reserve stays (bar the segment being filled)
    assert ob.dropped > 0
    recs = ob.peek(1000)
    assert recs[-1][0] == 150 and len(recs) + ob.dropped == 150
    assert [r[0] for r in recs] == list(range(151 - len(recs), 151))
    assert len(ob) == len(recs)
    rmtree(d)


def test_write_error_is_counted_never_raised():
    d = _d("enospc")
    ob = Outbox(d, capacity=1000)
    for i in range(30):
        ob.put("energy", _body(i))
    real = segments.write
    fails = [1]

    def refuse(path, data, new):
        if fails[0]:
            fails[0] -= 1
            raise OSError(28)
        real(path, data, new)

    segments.write = refuse
    try:
        assert ob.put("event", {"kind": "reboot"}) == 31  # dropped the oldest segment, retried once
        assert ob.write_fail == 1 and ob.dropped > 0
        fails[0] = 5
        dropped = ob.dropped
        assert ob.put("event", {"kind": "reboot"}) is None  # both tries refused: counted, not raised
        assert ob.write_fail == 3 and ob.dropped > dropped
    finally:
        segments.write = real
    assert ob.put("energy", {}) == 33
    seqs = [r[0] for r in Outbox(d, capacity=1000).peek(1000)]
    assert seqs == sorted(seqs) and 31 in seqs and 33 in seqs and 32 not in seqs
    rmtree(d)


def test_full_flash_with_nothing_to_drop_counts_the_record():
    d = _d("nospace")
    ob = Outbox(d, capacity=100, reserve=32768, free=lambda p: 1000)
    assert ob.put("event", {"kind": "reboot"}) is None
    assert ob.dropped == 1 and len(ob) == 0
    rmtree(d)


def test_corrupt_record_skipped_counted_and_deleted():
    d = _d("crc")
    ob = Outbox(d, capacity=10)
    ob.put("energy", {"x": 1})
    ob.put("energy", {"x": 2})
    (seg,) = [n for n in _files(d) if n.endswith(".s")]
    path = d + "/outbox/" + seg
    with open(path, "rb") as f:
        raw = f.read()
    with open(path, "wb") as f:
        f.write(raw.replace(b'"x":1', b'"x":7'))
    assert [r[0] for r in ob.peek(10)] == [2]
    assert [r[0] for r in ob.peek(10)] == [2]
    assert ob.corrupt == 1  # counted once
    assert ob.put("energy", {}) == 3
    ob.ack(3)
    assert not [n for n in _files(d) if n.endswith(".s")]  # the damaged line went with its segment
    rmtree(d)


def test_torn_tail_is_discarded_on_boot():
    d = _d("torn")
    ob = Outbox(d, capacity=10)
    ob.put("energy", {"x": 1})
    (seg,) = [n for n in _files(d) if n.endswith(".s")]
    with open(d + "/outbox/" + seg, "ab") as f:
        f.write(segments.line(2, "energy", '{"x":2}')[:20])  # cut while appending record 2
    with open(d + "/outbox/head.tmp", "w") as f:
        f.write("dead")  # cut while replacing the head
    ob = Outbox(d, capacity=10)
    assert [r[0] for r in ob.peek(10)] == [1]
    assert ob.put("energy", {}) == 2
    assert [r[0] for r in Outbox(d, capacity=10).peek(10)] == [1, 2]
    assert not [n for n in _files(d) if n.endswith(".tmp")]
    rmtree(d)


def test_old_layout_records_are_kept_and_quarantine_deleted():
    d = _d("legacy")
    from binascii import crc32

    os.mkdir(d + "/outbox")
    for seq in (7, 8):
        text = 'energy {"v":1,"seq":%d}' % seq
        with open("%s/outbox/%010d.r" % (d, seq), "w") as f:
            f.write("%08x %s" % (crc32(text.encode()) & 0xFFFFFFFF, text))
    with open("%s/outbox/%010d.r.bad" % (d, 3), "w") as f:
        f.write("junk")
    with open(d + "/outbox/seq", "w") as f:
        f.write("6")
    ob = Outbox(d, capacity=10)
    assert [r[0] for r in ob.peek(10)] == [7, 8]
    assert ob.put("energy", {}) == 9
    left = _files(d)
    assert not [n for n in left if n.endswith(".r") or n.endswith(".bad") or n == "seq"], left
    rmtree(d)


class _Stub:
    """What Terminal.store uses: the outbox, the uplink's wake event, the clock, emit_event."""

    def __init__(self, ob, app):
        self.outbox = ob
        self.events = []
        self.now = 0
        self.uplink = self
        self.wake = self
        self.clock = self
        self._store = app.Terminal.store

    def set(self):
        pass

    def uptime_s(self):
        return self.now

    def emit_event(self, kind, data=None):
        self.events.append((kind, data))
        self._store(self, "event", {"kind": kind, "data": data})

    def store(self, kind, body):
        self._store(self, kind, body)


def test_terminal_reports_drops_with_an_hourly_overflow_event():
    # regression: the outbox_overflow event PROTOCOL.md promises was never sent
    try:
        from firmware import app  # needs umqtt's socket module: the unix port has it, CPython not
    except ImportError:
        return
    d = _d("ovf-event")
    t = _Stub(Outbox(d, capacity=10), app)
    for i in range(12):
        t.store("energy", {"i": i})
    assert t.events == [("outbox_overflow", {"dropped": 1, "total": 1})]  # at once, then rate-limited
    t.now = 1800
    for i in range(5):
        t.store("energy", {"i": i})
    assert len(t.events) == 1
    t.now = 3600
    t.store("energy", {})
    assert t.events[-1] == ("outbox_overflow", {"dropped": 8, "total": 9})  # every drop since the last event
    stored = [json.loads(r[2]) for r in t.outbox.peek(100)]
    assert stored[-1]["kind"] == "outbox_overflow" and stored[-1]["data"]["total"] == 9
    t2 = _Stub(Outbox(d, capacity=10), app)  # after a reboot: drops not yet reported are reported, the total goes on
    t2.store("energy", {})
    assert t2.events == [("outbox_overflow", {"dropped": 2, "total": 11})]
    rmtree(d)
