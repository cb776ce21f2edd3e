"""Prometheus metrics for the decision engine, correct across the server's processes.

``Counter``, ``Gauge``, ``Histogram`` and ``Summary`` are prometheus_client's classes with
two differences:

* every metric name is prefixed ``de_`` (a name that already starts with ``de_`` is kept,
  so children made by ``.labels()`` and callers that prefix themselves are not doubled);
* ``Gauge`` defaults to ``multiprocess_mode="livesum"``: channels run in their own
  processes, each usually with its own label values, so the exported value is the sum over
  the *live* processes (a dead channel's gauge disappears once :func:`mark_process_dead`
  is called for it).  Pass ``multiprocess_mode="max"``, ``"mostrecent"``... to override.

Multiprocess mode is on when the environment variable ``PROMETHEUS_MULTIPROC_DIR`` names
a directory: every process then writes its values to memory-mapped files there and
:func:`render_metrics` aggregates them.  prometheus_client decides this when it is first
imported; importing this module re-checks the variable, so setting it before importing
``decisionengine.framework.util.metrics`` is enough.  :func:`enable_multiprocess` does it
at run time for metrics created afterwards.
"""

from __future__ import annotations

import glob
import os
import pathlib
from typing import Any

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, multiprocess, values

PREFIX = "de_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_GAUGE_MODE = "livesum"

__all__ = [
    "CONTENT_TYPE_LATEST",
    "DEFAULT_GAUGE_MODE",
    "MULTIPROC_ENV",
    "PREFIX",
    "Counter",
    "Gauge",
    "Histogram",
    "Summary",
    "clear_multiprocess_dir",
    "enable_multiprocess",
    "mark_process_dead",
    "multiprocess_dir",
    "prefixed",
    "render_metrics",
]


def prefixed(name: str) -> str:
    """``name`` with the ``de_`` prefix, added only once."""
    return name if name.startswith(PREFIX) else PREFIX + name


def multiprocess_dir() -> str | None:
    """The multiprocess directory from the environment, or None when not in multiprocess mode."""
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None


def _sync_value_class() -> None:
    """Make metrics created from now on follow ``PROMETHEUS_MULTIPROC_DIR``.

    prometheus_client reads the variable once at import; if it was imported before the
    variable was set, its value class would silently stay single-process.
    """
    wanted = multiprocess_dir() is not None
    if getattr(values.ValueClass, "_multiprocess", False) != wanted:
        values.ValueClass = values.get_value_class()


_sync_value_class()


def enable_multiprocess(directory: str | os.PathLike[str]) -> None:
    """Turn on multiprocess mode in this process (and the children it starts) using ``directory``.

    Metrics created before this call keep single-process values: call it at start-up.
    """
    path = pathlib.Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    _sync_value_class()


def clear_multiprocess_dir() -> None:
    """Delete the value files of a previous run (prometheus requires a clean directory at start)."""
    directory = multiprocess_dir()
    if directory is None:
        return
    for path in pathlib.Path(directory).glob("*.db"):
        path.unlink(missing_ok=True)


def mark_process_dead(pid: int) -> None:
    """Forget the live-mode values of process ``pid`` (call when a channel process exits)."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(pid, directory)


#: a metrics file shorter than its header (the 4-byte used size, padded to 8) is one a
#: process has created but not yet laid out
_HEADER_BYTES = 8


class SettledFilesCollector(multiprocess.MultiProcessCollector):
    """prometheus_client's multiprocess collector, leaving out the files a process is
    creating at this moment.  A new channel process creates its metrics file empty and
    then sizes it; a scrape that read it in between failed whole (``struct.error``: a
    500 for every metric, seen while channels start).  Such a file holds no sample yet,
    so leaving it out loses nothing."""

    def collect(self) -> Any:
        files = [path for path in glob.glob(os.path.join(self._path, "*.db")) if _settled(path)]
        return self.merge(files, accumulate=True)


def _settled(path: str) -> bool:
    try:
        return os.path.getsize(path) >= _HEADER_BYTES
    except OSError:  # gone meanwhile (a dead process's file removed)
        return False


def render_metrics(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """All metrics in the Prometheus text exposition format, and its content type.

    In multiprocess mode the values of every process are aggregated from the directory;
    otherwise ``registry`` (default: prometheus_client's global registry) is rendered.
    """
    directory = multiprocess_dir()
    if registry is None:
        if directory is not None:
            registry = CollectorRegistry()
            SettledFilesCollector(registry, path=directory)
        else:
            registry = prometheus_client.REGISTRY
    return prometheus_client.generate_latest(registry), CONTENT_TYPE_LATEST


class Counter(prometheus_client.Counter):
    """prometheus_client.Counter named ``de_<name>``."""

    def __init__(self, name: str, documentation: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(prefixed(name), documentation, *args, **kwargs)


class Gauge(prometheus_client.Gauge):
    """prometheus_client.Gauge named ``de_<name>``; multiprocess mode defaults to ``livesum``."""

    def __init__(
        self, name: str, documentation: str, *args: Any, multiprocess_mode: str = DEFAULT_GAUGE_MODE, **kwargs: Any
    ) -> None:
        super().__init__(prefixed(name), documentation, *args, multiprocess_mode=multiprocess_mode, **kwargs)


class Histogram(prometheus_client.Histogram):
    """prometheus_client.Histogram named ``de_<name>``."""

    def __init__(self, name: str, documentation: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(prefixed(name), documentation, *args, **kwargs)


class Summary(prometheus_client.Summary):
    """prometheus_client.Summary named ``de_<name>`` (multiprocess mode keeps count and sum)."""

    def __init__(self, name: str, documentation: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(prefixed(name), documentation, *args, **kwargs)
