# Freezes bdmeter into a MicroPython firmware image, so its bytecode runs from flash instead of RAM:
#   make -C ports/esp32 BOARD=ESP32_GENERIC_S3 FROZEN_MANIFEST=/path/to/bdmeter/manifest.py
# main.py and boot.py stay on the filesystem; the configuration is /config.json.
metadata(description="bdmeter: electric-energy metering terminal with 4G and BeiDou", version="0.1.0")

include("$(PORT_DIR)/boards/manifest.py")
require("umqtt.simple")
require("logging")

package("firmware")
for _name in ("atengine", "atlines", "dlt645", "dlt645_frozen", "dlt645_master", "dlt645_values", "ed25519",
              "mpcompat", "mqtt_session", "nmea", "quectel", "quectel_bringup", "quectel_gnss", "quectel_ladder",
              "quectel_parse", "quectel_socket", "quectel_files", "quectel_ssl", "sha512"):
    module(_name + ".py", base_path="lib")
