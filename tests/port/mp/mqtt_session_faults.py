"""Drives lib/mqtt_session against a real broker through the faults of a hostile server; prints what happened.

    mqtt_session_faults.py PORT oversize   # oversize QoS 1 messages, then a small one
    mqtt_session_faults.py PORT oom        # the message callback runs out of memory
"""

import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib", _root + "/build/lib", _root + "/tests/port/mp"]

import asyncio  # noqa: E402

import tcpstream  # noqa: E402
from mqtt_session import Session  # noqa: E402


async def main(port, mode):
    stream = await tcpstream.connect("127.0.0.1", port)
    got = []

    def on_message(topic, msg):
        if mode == "oom":
            raise MemoryError("memory allocation failed, allocating 4096 bytes")
        got.append(msg)

    counters = {}
    s = Session(stream, "mp-faults", keepalive=30, on_message=on_message, counters=counters)
    await s.connect(clean=False)
    print("GRANTED", await s.subscribe("t/cmd", 1))
    print("READY")
    for _ in range(300):  # bounded: 30 s
        if mode == "oversize" and b"small" in got:
            print("GOT small", "oversize", s.stats["oversize"], "counted", counters.get("oversize"))
            break
        if mode == "oom" and s.dead is not None:
            print("DEAD", s.dead, "connected", s.connected)
            break
        await asyncio.sleep_ms(100)
    else:
        print("TIMEOUT", got, s.stats, s.dead)
    s.close()
    print("DONE")


asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
