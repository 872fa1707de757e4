"""Runs first on a board: nothing slow here, so a bad main.py can always be replaced.

main.py starts the terminal; the watchdog is started there, by the supervisor,
once the configuration has been read.
"""

import gc

gc.collect()
