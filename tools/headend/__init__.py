"""The head-end: stores what terminals publish (SQLite), sends them signed commands, reports energy by region.

    bdmeter-headend run --broker 127.0.0.1:1883 --db fleet.db      (or python -m tools.headend ...)
"""

from tools.headend.ingest import Ingest
from tools.headend.store import Store

__all__ = ["Ingest", "Store"]
