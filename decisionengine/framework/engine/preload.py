"""Imported by the channel fork server after its guard: load what every channel uses, then freeze it.

Channel processes are forked from the fork server and share its memory pages until they
write to them: what an idle channel costs is the pages it writes (``benchmarks/engine.py``
prints it, PSS per channel at 50 channels).  A page is copied when any object on it is
written, a reference count included, so the fork server:

* imports what every channel process imports anyway, the modules the framework imports
  lazily included, and computes once what each would compute (the schema's head
  revision: Alembic reads every migration script for it);
* imports the PostgreSQL driver (psycopg2 loads libpq and its libraries, and builds its
  type casters, in every process that imports it) and finds the local time zone;
* keeps Arrow's buffers in the C library's allocator (``ARROW_DEFAULT_MEMORY_POOL``,
  unless the operator chose one): mimalloc's reservation cost each channel a 2 MiB huge
  page of its own for a few bytes of strings;
* does not run de-server's main module again in each process it forks (what
  ``multiprocessing`` does for targets defined there; ours are in :mod:`.channel_process`
  and the web's query worker), which wrote to 2 MiB of shared pages per channel;
* with ``DE_FORK_SERVER_WARM_UP=1``, runs a few generations of a throw-away channel
  (:mod:`.warmup`), so that the code every channel runs is already specialised by CPython,
  and the caches it fills on first use filled, in the pages they share (off by default:
  channel starts wait for it);
* moves everything loaded out of the garbage collector's reach (``gc.freeze()``): the
  collector writes to every object it scans, which would copy those pages into each
  channel one by one.
"""

import contextlib
import gc
import importlib
import multiprocessing.spawn
import os
from collections.abc import Callable
from typing import Any

from decisionengine.framework.engine import supervision

#: what every channel process imports
MODULES = (
    "decisionengine.framework.engine.channel_process",
    "decisionengine.framework.engine.source_process",
    "decisionengine.framework.taskmanager.shared_source",
    "decisionengine.framework.engine.links",
    "decisionengine.framework.engine.logs",
    "decisionengine.framework.config.validation",
    "decisionengine.framework.taskmanager.prepare",
    "decisionengine.framework.taskmanager.TaskManager",
    "decisionengine.framework.dataspace.datasources.sqlalchemy_ds",
    "decisionengine.framework.dataspace.connection_gate",
    # imported on first use by the channel's sources, DataSpace and queues
    "apscheduler.triggers.interval",
    "multiprocessing.synchronize",
    "sqlite3",
)
#: imported on first use, when installed: by pandas' Arrow strings; by SQLAlchemy's
#: PostgreSQL dialect as a channel opens its first connection (psycopg2 and the modules
#: it loads: 20 ms of CPU and 2.5 MiB of pages of its own in each channel process otherwise)
OPTIONAL_MODULES = (
    "pyarrow.pandas_compat",
    "psycopg2",
    "psycopg2.extensions",
    "psycopg2.extras",
    "psycopg2.errors",
)

#: preparation data that makes a child run the parent's ``__main__`` module again
MAIN_KEYS = ("init_main_from_name", "init_main_from_path")


def without_main(prepare: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """``multiprocessing.spawn.prepare`` for the processes de-server forks: all but the main module."""

    def prepare_without_main(data: dict[str, Any]) -> None:
        prepare({key: value for key, value in data.items() if key not in MAIN_KEYS})

    return prepare_without_main


def load() -> None:
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # before pyarrow is imported
    for name in MODULES:
        importlib.import_module(name)
    for name in OPTIONAL_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from decisionengine.framework.dataspace import migrations  # noqa: PLC0415

    migrations.head_revision()  # cached
    # APScheduler asks for the local time zone at each trigger a channel builds; tzlocal
    # finds and parses it once per process and keeps it: once here, for every channel
    with contextlib.suppress(Exception):
        importlib.import_module("tzlocal").get_localzone()
    multiprocessing.spawn.prepare = without_main(multiprocessing.spawn.prepare)


load()
if os.environ.get(supervision.WARM_UP_ENV) == "1":
    importlib.import_module("decisionengine.framework.engine.warmup").warm_up()  # after load(): Arrow's pool is set
gc.collect()
gc.freeze()
