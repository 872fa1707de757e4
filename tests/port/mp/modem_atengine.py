"""Runs lib/atengine against the scripted peer of tests/port/test_atengine.py; prints one JSON line per case.

    micropython modem_atengine.py <peer_port>

The order of commands here is the transcript's order there.
"""

import sys

_root = __file__.rpartition("/")[0] + "/../../.."
sys.path[:0] = [_root + "/lib"]

import asyncio  # noqa: E402
import binascii  # noqa: E402
import json  # noqa: E402

from atengine import AT, ATError, ATReboot, ATTimeout  # noqa: E402
from tcpuart import TcpUart  # noqa: E402

URCS = []
RDY = []


def emit(case, **kw):
    kw["case"] = case
    kw["urcs"] = list(URCS)
    URCS.clear()
    print(json.dumps(kw))


async def run(case, coro):
    try:
        r = await coro
        if isinstance(r, (bytes, bytearray)):
            emit(case, hex=binascii.hexlify(r).decode())
        else:
            emit(case, result=r)
    except ATError as e:
        emit(case, error="ATError", code=e.code, final=e.final, lines=e.lines)
    except ATTimeout as e:
        emit(case, error="ATTimeout", msg=str(e))
    except ATReboot as e:
        emit(case, error="ATReboot", msg=str(e))


async def main(port):
    at = AT(TcpUart("127.0.0.1:%d" % port))
    for prefix in ("+QIURC:", "+QIND:", "+CPIN:", "+QGPSURC:"):
        at.on_urc(prefix, URCS.append)
    at.on_rdy = lambda: RDY.append(at.stats["rdy"])
    at.start()

    await run("basic", at.cmd("AT+CSQ"))
    await run("echo", at.cmd("AT+CGSN"))
    await run("urc_inside", at.cmd('AT+QGPSGNMEA="GGA"'))
    await run("owned_prefix", at.cmd("AT+CPIN?"))
    w = asyncio.create_task(at.wait_urc("+QGPSURC:", 2000))  # waiting before the URC can arrive
    await asyncio.sleep_ms(0)
    await at.cmd("AT+TRIG=1")  # the peer answers with OK and several URCs in one chunk
    await run("urc_chunk", w)
    await run("qird_ok_inside", at.read_data("AT+QIRD=0,1500"))
    await run("qird_split", at.read_data("AT+QIRD=0,1500"))
    await run("qird_empty", at.read_data("AT+QIRD=0,1500"))
    await run("send_ok", at.cmd("AT+QISEND=0,5", payload=b"he\r\nl"))
    await run("send_fail", at.cmd("AT+QISEND=0,3", payload=b"abc"))
    await run("send_error", at.cmd("AT+QISEND=5,3", payload=b"abc"))
    await run("cme_error", at.cmd("AT+CPIN?"))
    await run("cms_error", at.cmd("AT+CMGS=1"))
    await run("plain_error", at.cmd("AT+FOO"))
    await run("timeout", at.cmd("AT+QIACT=1", timeout_ms=300))
    await run("after_timeout", at.cmd("AT"))
    await run("rdy_in_command", at.cmd("AT+CFUN?"))
    await at.cmd("AT+TRIG=2")  # the peer then announces RDY while idle
    await asyncio.sleep_ms(200)
    emit("rdy_idle", rdy=at.stats["rdy"], calls=RDY)
    await run("garbage_glued", at.cmd("AT+CSQ"))
    await at.cmd("AT+TRIG=3")  # the peer then floods noise without a newline
    await asyncio.sleep_ms(200)
    await run("after_noise", at.cmd("AT"))
    await run("expect", at.cmd('AT+QIOPEN=1,0,"TCP","h",1,0,0', expect="+QIOPEN: 0,"))
    # The open result of one command arrives inside the response of the next one.
    t = asyncio.create_task(at.cmd('AT+QIOPEN=1,1,"TCP","h",1,0,0', timeout_ms=3000, expect="+QIOPEN: 1,"))
    await asyncio.sleep_ms(100)
    await run("interleaved_csq", at.cmd("AT+CSQ"))
    await run("interleaved_open", t)
    await run("wait_urc_timeout", at.wait_urc("+NEVER:", 100))
    emit("stats", stats=at.stats)
    at.stop()


asyncio.run(main(int(sys.argv[1])))
