"""Board profiles: which UARTs and pins a terminal uses, as data chosen by the config key `board`.

Adding a board means adding an entry here, never forking code. UART entries
give the peripheral id, pins and line settings; `de` is the RS-485 driver-enable
pin (None where the transceiver switches by itself). On the unix port each UART
is a TCP connection to the `host:port` named in the config. docs/HARDWARE.md has
each reference board's wiring and parts; tests/host/test_boards.py keeps the two
in step.
"""

BOARDS = {
    # MicroPython unix port: simulators stand in for the meter bus and the modem.
    "unix": {
        "uart": "tcp",
        "led": None,
        "pwrkey": None,
        # the modem simulator's reset input, driven over its control port (config `modem_ctl`), so the
        # recovery ladder's power rung really resets a hung module, as the pin does on a board
        "reset": {"ctl": "reset"},
        "wdt": False,
    },
    # Reference board: ESP32-S3-DevKitC-1, auto-direction RS-485 transceiver (MAX13487E or THVD1406: no DE pin,
    # the transceiver turns its driver on from the data line) on UART1, Quectel EC800M (LTE Cat.1 + GNSS) on
    # UART2 through a 1.8 V level shifter, PWRKEY/RESET through NPN drivers, a plain LED on GPIO21 (the
    # DevKitC-1's own RGB LED on GPIO48/38 is addressable and would need a NeoPixel driver).
    "esp32s3-ec800m": {
        "uart": "machine",
        "meter_uart": {"id": 1, "tx": 17, "rx": 18, "de": None, "baud": 2400, "bits": 8, "parity": 0, "stop": 1,
                       "rxbuf": 512},
        "modem_uart": {"id": 2, "tx": 4, "rx": 5, "de": None, "baud": 115200, "bits": 8, "parity": None,
                       "stop": 1, "rxbuf": 4096},
        "pwrkey": {"pin": 6, "active": 1},
        "reset": {"pin": 7, "active": 1},
        "led": {"pin": 21, "active": 1},
        "wdt": True,
    },
    # Second reference: Raspberry Pi Pico (RP2040), a MAX3485 RS-485 transceiver whose DE and /RE, tied together,
    # are driven by GPIO2, a Quectel EC200U on UART1 through a 1.8 V level shifter, the Pico's own LED (GPIO25).
    "rp2040-ec200u": {
        "uart": "machine",
        "meter_uart": {"id": 0, "tx": 0, "rx": 1, "de": 2, "baud": 2400, "bits": 8, "parity": 0, "stop": 1,
                       "rxbuf": 512},
        "modem_uart": {"id": 1, "tx": 4, "rx": 5, "de": None, "baud": 115200, "bits": 8, "parity": None,
                       "stop": 1, "rxbuf": 4096},
        "pwrkey": {"pin": 14, "active": 1},
        "reset": {"pin": 15, "active": 1},
        "led": {"pin": 25, "active": 1},
        "wdt": True,
    },
}
