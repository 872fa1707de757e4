"""Drives lib/mqtt_session over a plain TCP connection to a real broker; prints what happened."""

import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib", _root + "/build/lib", _root + "/tests/port/mp"]

import asyncio  # noqa: E402

import tcpstream  # noqa: E402
from mqtt_session import Disconnected, Session  # noqa: E402


async def main(port, count):
    stream = await tcpstream.connect("127.0.0.1", port)
    got = []
    s = Session(stream, "mp-check", keepalive=10, on_message=lambda t, m: got.append((t, m)))
    await s.connect(will=("t/status", b"offline", 1, True))
    print("CONNECTED")
    print("GRANTED", await s.subscribe("t/cmd", 1))
    await s.publish("t/status", b"online", qos=1, retain=True)
    for i in range(count):
        await s.publish("t/data", b"%d" % i, qos=1)
    print("PUBLISHED", count)
    for _ in range(100):  # bounded: 10 s
        if got:
            break
        await asyncio.sleep_ms(100)
    for _topic, m in got:
        await s.publish("t/echo", m, qos=1)
        print("ECHOED", m.decode())
    await s.publish("t/big", b"x" * 3000, qos=1)
    print("BIG")
    if sys.argv[3] == "drop":
        s.close()  # abrupt: the broker must publish the will
        try:
            await s.publish("t/data", b"late", qos=1)
        except Disconnected as e:
            print("DISCONNECTED", e)
    else:
        await s.disconnect()
    print("DONE", s.stats["tx_packets"], s.stats["rx_packets"])


asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
