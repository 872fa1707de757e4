"""A long server outage on a 1 MB littlefs at a board's settings, then the server returns.

    micropython -X heapsize=8M tests/port/mp/outbox_outage.py <esp32|rp2> [quick]

The filesystem is formatted as the port formats its flash (4 KB blocks, 256 of
them; ESP32: VfsLfs2 defaults, RP2: progsize 256) on a RAM block device.
Records are real ones (firmware/payloads.py): an energy reading every 15
minutes for one meter with all seven registers and instantaneous values, a
heartbeat-free outage with a reboot event each day and a few others. Prints one
JSON line with:

- capacity (not with `quick`): records the outbox holds on an otherwise empty 1 MB filesystem
  before the flash (not the count) bounds it, and the flash bytes per record;
- week: a week's outage at the default `outbox_max` (1000): what was delivered;
- weeks3: three weeks at the default `outbox_max`: the newest 1000 delivered,
  the rest counted as dropped (the counter survives the daily reboots);
- small: a week with only 192 KB free (the rest holding other files) and a
  large `outbox_max`: the flash bounds the ring, the reserve stays free;
- full_boot: a week's backlog, then the filesystem filled to the last byte by
  other files, then a reset: the outbox opens and the reboot event is stored
  (dropping the oldest) or counted, and later records are stored.
"""

import gc
import json
import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib", _root, _root + "/tests/port/mp"]

import os  # noqa: E402
import time  # noqa: E402

import vfs  # noqa: E402
from ramflash import RamFlash, mount, umount  # noqa: E402

from firmware import payloads  # noqa: E402
from firmware.outbox import Outbox  # noqa: E402

_BS = const(4096)  # noqa: F821 - micropython builtin
_BLOCKS = const(256)  # noqa: F821 - 1 MB
_MOUNT = "/wk"
_STATE = _MOUNT + "/data"
_RESERVE = 32768
_DAY = 96  # 15-minute readings
_SETTINGS = {"esp32": {}, "rp2": {"progsize": 256}}


def _fresh(opts):
    global _dev
    umount(_MOUNT)
    _dev = None
    gc.collect()
    _dev = RamFlash(_BLOCKS)
    mount(_dev, _MOUNT, opts, mkfs=True)


def _remount(opts):
    vfs.umount(_MOUNT)
    mount(_dev, _MOUNT, opts)


def _free():
    st = os.statvfs(_MOUNT)
    return st[0] * st[3]


def _energy(i):
    c = payloads.Centi
    kwh = {"fwd": c(1234567 + i * 37), "t1": c(312345 + i * 9), "t2": c(412345 + i * 11), "t3": c(312345 + i * 9),
           "t4": c(197532 + i * 8), "rev": c(1234), "comb": c(1233333 + i * 37)}
    inst = {"v": [229.8, 230.1, 230.4], "i": [1.234, 0.5, 0.0], "p": 0.4123, "pf": 0.98, "f": 50.01}
    return payloads.energy(1795430400 + i * 900, "gnss", "000072007201", kwh, inst)


def _event(i, kind, data):
    return payloads.event(1795430400 + i * 900, "gnss", kind, data)


def _boot(cap, day):
    ob = Outbox(_STATE, capacity=cap, reserve=_RESERVE, encode=payloads.dumps)
    ob.put("event", _event(day * _DAY, "reboot", {"cause": "wdt", "why": "stuck: uplink"}))
    return ob


def _outage(cap, days):
    """`days` without a server (a reboot each day), then drain everything. Returns figures and problems."""
    ob = _boot(cap, 0)
    puts = 1
    sizes = []
    for day in range(days):
        if day:
            ob = _boot(cap, day)  # reopened from flash, as after a reset
            puts += 1
        for q in range(_DAY):
            i = day * _DAY + q
            body = _energy(i)
            ob.put("energy", body)
            if len(sizes) < 50:
                sizes.append(len(payloads.dumps(body)) + 20)
            puts += 1
            if q == 40:
                ob.put("event", _event(i, "meter_offline", {"meter": "000072007201"}))
                ob.put("event", _event(i + 1, "meter_online", {"meter": "000072007201"}))
                puts += 2
    free_low = _free()
    ob = Outbox(_STATE, capacity=cap, reserve=_RESERVE, encode=payloads.dumps)  # the boot the server sees
    dropped, inc = ob.dropped, ob.inc
    delivered = []
    bad = 0
    while len(delivered) < 100000:
        recs = ob.peek(1)
        if not recs:
            break
        seq, kind, text = recs[0]
        body = json.loads(text)
        if body.get("inc") != inc or body.get("seq") != seq or body.get("v") != payloads.V:
            bad += 1
        delivered.append(seq)
        ob.ack(seq)
    problems = []
    if bad:
        problems.append("%d records without inc/seq/v" % bad)
    if delivered != list(range(puts - len(delivered) + 1, puts + 1)):
        problems.append("not the newest, in order: %s..%s of %d" % (delivered[:3], delivered[-3:], puts))
    if len(delivered) + dropped != puts:
        problems.append("delivered %d + dropped %d != stored %d" % (len(delivered), dropped, puts))
    if free_low < _RESERVE - _BS:
        problems.append("reserve eaten: %d bytes free" % free_low)
    return {"records": puts, "delivered": len(delivered), "dropped": dropped, "corrupt": ob.corrupt,
            "write_fail": ob.write_fail, "free_low_bytes": free_low,
            "record_bytes": sum(sizes) // max(1, len(sizes))}, problems


def _fill(keep):
    """Other files take all but `keep` bytes of the filesystem; with keep=0, until not even 16 bytes fit."""
    chunk = b"\0" * _BS
    with open(_MOUNT + "/filler", "ab") as f:
        while _free() > keep + 2 * _BS:
            f.write(chunk)
    if keep:
        return
    n, i = _BS, 0
    while n >= 16:  # new small files to the last byte littlefs will take (statvfs is not exact near full)
        try:
            with open(_MOUNT + "/fill%d" % i, "wb") as f:
                f.write(b"\0" * n)
            i += 1
        except OSError:
            n //= 2


def _probe():
    """Whether a 64-byte file can still be written (removed again)."""
    try:
        with open(_MOUNT + "/probe", "wb") as f:
            f.write(b"\0" * 64)
        os.remove(_MOUNT + "/probe")
        return True
    except OSError:
        return False


def _capacity(opts, out):
    _fresh(opts)  # how many records 1 MB holds with the reserve kept
    empty = _free()
    ob = Outbox(_STATE, capacity=100000, reserve=_RESERVE, encode=payloads.dumps)
    i = 0
    while ob.dropped == 0 and i < 20000:
        ob.put("energy", _energy(i))
        i += 1
    n = len(ob)
    out["capacity_records"] = n
    out["flash_bytes_per_record"] = (empty - _free()) // max(1, n)
    out["segment_bytes"] = ob.seg_bytes
    # wear: what one stored record costs in programmed bytes and erased blocks (steady state, 200 records)
    w, e = _dev.written, _dev.erased
    for j in range(200):
        ob.put("energy", _energy(i + j))
    out["programmed_bytes_per_put"] = (_dev.written - w) // 200
    out["erases_per_put"] = (_dev.erased - e) / 200
    t0 = time.ticks_ms()
    ob = Outbox(_STATE, capacity=100000, reserve=_RESERVE, encode=payloads.dumps)  # a boot with a full outbox
    out["open_ms_full_unix"] = time.ticks_diff(time.ticks_ms(), t0)
    w, e = _dev.written, _dev.erased
    for _ in range(200):
        ob.ack(ob.peek(1)[0][0])
    out["programmed_bytes_per_ack"] = (_dev.written - w) // 200
    out["erases_per_ack"] = (_dev.erased - e) / 200


def run(name, quick):
    opts = _SETTINGS[name]
    out = {"settings": name, "fs_bytes": _BS * _BLOCKS}
    problems = []
    if not quick:
        _capacity(opts, out)

    for key, cap, days, keep in (("week", 1000, 7, None), ("weeks3", 1000, 21, None), ("small", 100000, 7, 196608)):
        _fresh(opts)
        if keep:
            _fill(keep)
        figures, p = _outage(cap, days)
        out[key] = figures
        problems += [key + ": " + x for x in p]
    if out["week"]["dropped"]:
        problems.append("week: %d dropped at the default outbox_max" % out["week"]["dropped"])
    if not out["weeks3"]["dropped"] or not out["small"]["dropped"]:
        problems.append("the long and the small outages should overflow")

    _fresh(opts)  # a week's backlog, then the filesystem filled to the last block by something else, then boot
    ob = Outbox(_STATE, capacity=1000, reserve=_RESERVE, encode=payloads.dumps)
    for i in range(7 * _DAY):
        ob.put("energy", _energy(i))
    before = len(ob)
    _fill(0)
    _remount(opts)  # the reset
    full = not _probe()
    try:
        ob = _boot(1000, 8)
        stored = ob.peek(100000)
        last = json.loads(stored[-1][2]) if stored else {}
        boot_ok = last.get("kind") == "reboot" or ob.dropped > 0
        out["full_boot"] = {"flash_full_at_boot": full, "records_before": before, "records_after": len(ob),
                            "boot_event_stored": last.get("kind") == "reboot", "dropped": ob.dropped,
                            "write_fail": ob.write_fail}
        if not boot_ok:
            problems.append("full_boot: the reboot event neither stored nor counted")
        for i in range(20):  # and the terminal keeps storing
            ob.put("energy", _energy(1000 + i))
        if json.loads(ob.peek(100000)[-1][2]).get("seq") != ob.next_seq - 1:
            problems.append("full_boot: the newest record is not stored")
    except Exception as e:  # noqa: BLE001 - any exception here is the reboot loop we are looking for
        problems.append("full_boot: %r" % (e,))
    out["problems"] = problems
    vfs.umount(_MOUNT)
    print(json.dumps(out))


run(sys.argv[1], sys.argv[2:] == ["quick"])
