"""bdmeter: firmware of an electric-energy metering terminal with 4G and BeiDou."""

VERSION = "0.1.0"
