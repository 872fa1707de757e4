"""Board profiles (firmware/boards.py) match docs/HARDWARE.md's wiring tables and use pins the MCU can spare."""

import re

import pytest

from harness import ROOT

from firmware.boards import BOARDS

_ROWS = {  # wiring-table signal -> (profile entry, key)
    "meter UART TX": ("meter_uart", "tx"), "meter UART RX": ("meter_uart", "rx"), "meter DE": ("meter_uart", "de"),
    "modem UART TX": ("modem_uart", "tx"), "modem UART RX": ("modem_uart", "rx"),
    "modem PWRKEY": ("pwrkey", "pin"), "modem RESET": ("reset", "pin"), "status LED": ("led", "pin"),
}

# ESP32-S3-DevKitC-1: strapping 0/3/45/46, USB 19/20, in-package and module flash/PSRAM 26-37, console UART0
# 43/44, and the addressable RGB LED (GPIO48 on board v1.0, GPIO38 on v1.1), which a plain output cannot drive.
_ESP32S3_AVOID = {0, 3, 45, 46, 19, 20, 43, 44, 48, 38} | set(range(26, 38))
# Raspberry Pi Pico: UART pins per peripheral; 23, 24, 29 are used on the board; 25 is its LED.
_RP2_UART = {0: ({0, 12, 16}, {1, 13, 17}), 1: ({4, 8}, {5, 9})}
_PICO_AVOID = {23, 24, 29}


def _wiring(board):
    text = (ROOT / "docs" / "HARDWARE.md").read_text()
    section = text.split("\n## %s:" % board, 1)[1].split("\n## ", 1)[0]
    table = section.split("Wiring", 1)[1].split("Parts:", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1] and not cells[1].startswith("-"):
            m = re.match(r"(.*?)\s*(?:\(UART(\d)\))?$", cells[0])
            rows[m.group(1)] = (cells[1], m.group(2))
    return rows


def _pins(profile):
    out = {}
    for name, (entry, key) in _ROWS.items():
        spec = profile.get(entry)
        out[name] = spec.get(key) if spec else None
    return out


@pytest.mark.parametrize("board", ["esp32s3-ec800m", "rp2040-ec200u"])
def test_profile_matches_the_wiring_table(board):
    profile, rows = BOARDS[board], _wiring(board)
    assert set(rows) >= set(_ROWS), "docs/HARDWARE.md %s: wiring rows missing: %s" % (board, set(_ROWS) - set(rows))
    for name, pin in _pins(profile).items():
        shown, uart_id = rows[name]
        assert shown == ("none" if pin is None else str(pin)), (board, name, shown, pin)
        if uart_id is not None:
            assert profile[_ROWS[name][0]]["id"] == int(uart_id), (board, name)


@pytest.mark.parametrize("board", ["esp32s3-ec800m", "rp2040-ec200u"])
def test_no_pin_used_twice(board):
    used = [p for p in _pins(BOARDS[board]).values() if p is not None]
    assert len(used) == len(set(used)), used


def test_esp32s3_avoids_strapping_flash_usb_console_and_the_rgb_led():
    pins = _pins(BOARDS["esp32s3-ec800m"])
    bad = {name: p for name, p in pins.items() if p in _ESP32S3_AVOID}
    assert not bad, bad


def test_esp32s3_meter_transceiver_switches_itself():
    # the reference board's transceiver is auto-direction (MAX13487E/THVD1406): it has no DE pin to drive
    assert BOARDS["esp32s3-ec800m"]["meter_uart"]["de"] is None


def test_pico_uarts_sit_on_their_peripherals_pins():
    profile = BOARDS["rp2040-ec200u"]
    for role in ("meter_uart", "modem_uart"):
        u = profile[role]
        tx_ok, rx_ok = _RP2_UART[u["id"]]
        assert u["tx"] in tx_ok and u["rx"] in rx_ok, (role, u)
    pins = _pins(profile)
    assert not {p for p in pins.values() if p in _PICO_AVOID}
    assert pins["status LED"] == 25  # the Pico's own LED, a plain GPIO (not so on the Pico W)
