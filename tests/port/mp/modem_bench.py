"""AT engine and driver costs under the unix port against tools/sim/modem with no module delays; prints one JSON line.

    micropython modem_bench.py <sim_port> <echo_port> <rounds>
"""

import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib"]

import asyncio  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import quectel  # noqa: E402
from tcpuart import TcpUart  # noqa: E402

TIMEOUTS = {"cmd": 2000, "probe": 300, "boot": 3000, "sim": 3000, "reg": 3000, "qiact": 2000, "qideact": 1000,
            "qiclose": 1000, "qiopen": 3000, "cfun": 1000, "read": 2000, "poll": 20}
CSQ_REPLY = b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n"


def us_since(t0):
    return time.ticks_diff(time.ticks_us(), t0)


def _best(fn, batches=5, per=400):
    """Microseconds per call of fn(): the best of several batches (the least disturbed by other load)."""
    best = None
    for _ in range(batches):
        t0 = time.ticks_us()
        for _ in range(per):
            fn()
        us = us_since(t0) / per
        best = us if best is None or us < best else best
    return best


def parse_cost(at):
    """Engine CPU per response without I/O: feed recorded replies straight into the line handling."""
    qird = b"\r\n+QIRD: 1024\r\n" + bytes(range(256)) * 4 + b"\r\n\r\nOK\r\n"

    def csq():
        at._begin("AT+CSQ")
        at.feed(CSQ_REPLY)

    def qird_1k():
        at._begin("AT+QIRD=0,1500", data_prefix="+QIRD:")
        at.feed(qird)

    r = _best(csq), _best(qird_1k)
    at._cur = None
    return r


async def main(sim_port, echo_port, rounds):
    m = quectel.Quectel(TcpUart("127.0.0.1:%d" % sim_port), timeouts=TIMEOUTS)
    t0 = time.ticks_us()
    await m.start()
    bringup_ms = us_since(t0) / 1000
    at = m.at
    for _ in range(10):  # warm-up
        await at.cmd("AT+CSQ")
    t0 = time.ticks_us()
    for _ in range(rounds):
        await at.cmd("AT+CSQ")
    csq_us = us_since(t0) / rounds

    sock = await m.open_socket("127.0.0.1", echo_port)
    block = bytes(range(256)) * 4
    qird_total = send_total = 0
    n = max(10, rounds // 4)
    for _ in range(n):
        t0 = time.ticks_us()
        await sock.write(block)
        send_total += us_since(t0)
        for _ in range(2000):  # until the echo is announced (bounded: 2 s)
            if sock._pending:
                break
            await asyncio.sleep_ms(1)
        await asyncio.sleep_ms(5)  # let the whole kilobyte reach the module
        t0 = time.ticks_us()
        data = await at.read_data("AT+QIRD=%d,1500" % sock.id)
        qird_total += us_since(t0)
        while data:  # drain to +QIRD: 0 so the next block is announced again
            data = await at.read_data("AT+QIRD=%d,1500" % sock.id)
        sock._pending = False
    await sock.aclose()
    commands, timeouts = at.stats["commands"], at.stats["timeouts"]
    parse_csq, parse_qird = parse_cost(at)  # a fixed amount of work, whatever `rounds` is
    print(json.dumps({"bringup_ms": bringup_ms, "csq_us": csq_us, "qird_1k_us": qird_total / n,
                      "qisend_1k_us": send_total / n, "parse_csq_us": parse_csq, "parse_qird_1k_us": parse_qird,
                      "commands": commands, "timeouts": timeouts}))


asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
