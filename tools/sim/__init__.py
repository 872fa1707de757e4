"""Simulated UART peers: DL/T 645 meters on an RS-485 bus and a Quectel-class 4G modem with GNSS."""
