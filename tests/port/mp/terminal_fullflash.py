"""The whole terminal boots twice on a littlefs filled to the last byte, as a board would after an outage.

    micropython -X heapsize=8M tests/port/mp/terminal_fullflash.py

A 1 MB littlefs at ESP32 settings on a RAM block device holds the config, a
week's outbox backlog and other files up to the last byte. firmware.app's
Terminal then boots on it twice (its UART peers absent: nothing answers), runs
for a few seconds each time and is stopped; a crash is noted for the next boot
as app.main does. Regression: the boot-time reboot event (with its `why`, too
long to sit inline in littlefs metadata) failed with OSError 28 before any task
started, every boot.
Prints one JSON line: how each boot ended, and the reboot events stored or drops counted.
"""

import json
import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib", _root + "/build/lib", _root, _root + "/tests/port/mp"]

import asyncio  # noqa: E402

import vfs  # noqa: E402
from ramflash import RamFlash, mount  # noqa: E402

from firmware import app, payloads  # noqa: E402
from firmware.outbox import Outbox  # noqa: E402
from firmware.supervision import note_reset, reason  # noqa: E402

_BS = const(4096)  # noqa: F821 - micropython builtin
_BLOCKS = const(256)  # noqa: F821
_MOUNT = "/ff"


_fills = [0]


def _fill():
    _fills[0] += 1
    chunk = b"\0" * _BS
    n, i = _BS, 0
    while n >= 1:
        try:
            with open(_MOUNT + "/fill%d-%d" % (_fills[0], i), "wb") as f:
                f.write(chunk[:n])
            i += 1
        except OSError:
            n //= 2


async def _run_for(t, ms):
    try:
        await asyncio.wait_for_ms(t.run(), ms)
    except asyncio.TimeoutError:
        return "running"
    return "returned"


def main():
    dev = RamFlash(_BLOCKS)
    mount(dev, _MOUNT, mkfs=True)
    cfg_path = _MOUNT + "/config.json"
    with open(cfg_path, "w") as f:
        json.dump({"board": "unix", "meter_uart": "127.0.0.1:9", "modem_uart": "127.0.0.1:9",
                   "state_dir": _MOUNT + "/data", "log_level": "error"}, f)
    ob = Outbox(_MOUNT + "/data", capacity=1000, reserve=32768, encode=payloads.dumps)
    c = payloads.Centi
    inst = {"v": [229.8, 230.1, 230.4], "i": [1.234, 0.5, 0.0], "p": 0.4123, "pf": 0.98, "f": 50.01}
    for i in range(672):  # a week of 15-minute readings (about 290 bytes each), never sent
        kwh = {"fwd": c(1234567 + i), "t1": c(312345 + i), "t2": c(412345 + i), "t3": c(312345), "t4": c(197532),
               "rev": c(1234), "comb": c(1233333 + i)}
        try:
            ob.put("energy", payloads.energy(1795430400 + i * 900, "gnss", "000072007201", kwh, inst))
        except OSError:
            break  # the outage filled the flash (the one-file-per-record outbox did, at 236 records)
    backlog = len(ob)
    with open(_MOUNT + "/data/reset_why", "w") as f:
        f.write("task meter died: OSError: 28")  # how the outage ended on the one-file-per-record outbox
    _fill()
    vfs.umount(_MOUNT)
    mount(dev, _MOUNT)  # power cycle
    _fill()  # what a remount gave back (littlefs frees what failed writes left), taken too
    out = {"backlog": backlog, "boots": [], "write_fail": []}
    for _ in range(2):
        try:
            t = app.Terminal(cfg_path, "power")
            ended = asyncio.run(_run_for(t, 3000))
            t.close()
            out["boots"].append(ended)
            out["write_fail"].append(getattr(t.outbox, "write_fail", None))  # > 0: the flash was full at boot
        except Exception as e:  # noqa: BLE001 - what the regression raised: the reboot loop
            out["boots"].append("crash: %r" % (e,))
            note_reset(_MOUNT + "/data/reset_why", "crash: " + reason(e))  # as app.main does before the reset
        asyncio.new_event_loop()
    ob = Outbox(_MOUNT + "/data", capacity=1000, reserve=32768, encode=payloads.dumps)
    kinds = [json.loads(r[2]).get("kind") for r in ob.peek(2000)]
    out["reboot_events"] = kinds.count("reboot")
    out["overflow_events"] = kinds.count("outbox_overflow")
    out["dropped"] = ob.dropped
    out["records"] = len(ob)
    vfs.umount(_MOUNT)
    print(json.dumps(out))


main()
