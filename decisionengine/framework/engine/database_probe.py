"""The server's own look at its DataSpace database, for monitoring.

Channels report whether *they* reach the database (``de_channel_database_up``), but a server
whose channels are all stopped, or that has none, would then say nothing.  This thread asks
the database for its size every ``interval`` seconds (one short statement): the answer is
``de_dataspace_size_bytes`` (where the backend can tell), and whether an answer came is
``de_dataspace_up`` (a failure also counts in ``de_dataspace_errors_total``).  The first probe
runs at once, so the figures are there from the server's first scrape.
"""

from __future__ import annotations

import threading
from typing import Any

from decisionengine.framework.engine import server_metrics
from decisionengine.framework.util.logger import get_logger

DEFAULT_INTERVAL = 30.0


class DatabaseProbe:
    def __init__(self, dataspace: Any, interval: float = DEFAULT_INTERVAL) -> None:
        self.dataspace = dataspace
        self.interval = interval
        self.logger = get_logger().bind(module="database_probe")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.up: bool | None = None

    def probe(self) -> None:
        """One look: size and reachability exported; a change of reachability logged once."""
        try:
            size = self.dataspace.database_bytes()
        except Exception as exc:
            server_metrics.DATASPACE_ERRORS.inc()
            server_metrics.DATASPACE_UP.set(0)
            if self.up is not False:
                self.logger.error("the DataSpace database cannot be reached", error=str(exc))
            self.up = False
            return
        if size is not None:
            server_metrics.DATASPACE_BYTES.set(size)
        server_metrics.DATASPACE_UP.set(1)
        if self.up is False:
            self.logger.info("the DataSpace database is reachable again")
        self.up = True

    def _run(self) -> None:
        while True:
            self.probe()
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="database-probe", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
