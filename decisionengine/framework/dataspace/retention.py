"""The Reaper's defaults and limits, apart from the Reaper itself.

The configuration schema (``config.global_config``) checks ``retention_interval_in_days``
and the Reaper's schedule against these; importing them from here rather than from
:mod:`.maintain` keeps the DataSpace (SQLAlchemy, pandas) out of every process that only
reads a configuration, such as ``de-client``.
"""

from __future__ import annotations

DEFAULT_RETENTION_INTERVAL_DAYS = 365
DEFAULT_SECONDS_BETWEEN_RUNS = 24 * 60 * 60
DEFAULT_START_DELAY_SECONDS = 1818
DEFAULT_BATCH_SIZE = 100
#: the least retention a configuration may ask for
MIN_RETENTION_INTERVAL_DAYS = 7
#: the shortest interval between two passes
MIN_SECONDS_BETWEEN_RUNS = 2 * 59 * 60  # 7080
