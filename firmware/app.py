"""The terminal's application: wiring of config, board, drivers and tasks."""

import asyncio
import sys

from firmware import VERSION, board as boardmod, log as logmod

log = logmod.get("bdmeter")


async def _run(cfg_path):
    import json

    cfg = {"board": "unix"}
    if cfg_path:
        with open(cfg_path) as f:
            cfg.update(json.load(f))
    board = boardmod.profile(cfg["board"])
    meter = boardmod.open_uart(board, "meter_uart", cfg)
    modem = boardmod.open_uart(board, "modem_uart", cfg)
    log.info("bdmeter %s started on board %s", VERSION, cfg["board"])
    try:
        while True:
            await asyncio.sleep(1)
    finally:
        meter.close()
        modem.close()


def main(cfg_path=None):
    try:
        asyncio.run(_run(cfg_path))
    except KeyboardInterrupt:
        log.info("stopped")
    sys.exit(0)
