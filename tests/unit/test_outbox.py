"""The persistent outbox: order, sequence numbers across reboots, bounded ring, CRC, torn writes."""

import os

from portable import rmtree, scratch

from firmware.outbox import Outbox


def _d(name):
    return scratch("outbox-" + name)


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


def test_survives_reboot_and_never_reuses_seq():
    d = _d("reboot")
    ob = Outbox(d, capacity=10)
    for i in range(3):
        ob.put("energy", {"i": i})
    ob.ack(1)
    ob = Outbox(d, capacity=10)  # power cut and restart
    assert [r[0] for r in ob.peek(10)] == [2, 3]
    ob.ack(2)
    ob.ack(3)  # empty now: the counter must remember 3
    ob = Outbox(d, capacity=10)
    assert len(ob) == 0
    assert ob.put("energy", {}) == 4
    rmtree(d)


def test_full_ring_drops_oldest_and_counts():
    d = _d("ring")
    ob = Outbox(d, capacity=3)
    for i in range(5):
        ob.put("energy", {"i": i})
    assert [r[0] for r in ob.peek(10)] == [3, 4, 5]
    assert ob.dropped == 2
    rmtree(d)


def test_corrupt_record_set_aside_and_counted():
    d = _d("crc")
    ob = Outbox(d, capacity=10)
    ob.put("energy", {"x": 1})
    ob.put("energy", {"x": 2})
    path = "%s/outbox/%010d.r" % (d, 1)
    with open(path) as f:
        raw = f.read()
    with open(path, "w") as f:
        f.write(raw.replace('"x":1', '"x":7'))
    assert [r[0] for r in ob.peek(10)] == [2]
    assert ob.corrupt == 1
    assert ob.put("energy", {}) == 3
    rmtree(d)


def test_torn_temp_file_is_discarded_on_boot():
    d = _d("torn")
    ob = Outbox(d, capacity=10)
    ob.put("energy", {"x": 1})
    with open("%s/outbox/%010d.r.tmp" % (d, 2), "w") as f:
        f.write("0000")  # cut while writing record 2
    ob = Outbox(d, capacity=10)
    assert [r[0] for r in ob.peek(10)] == [1]
    assert ob.put("energy", {}) == 2
    assert not [n for n in os.listdir(d + "/outbox") if n.endswith(".tmp")]
    rmtree(d)
