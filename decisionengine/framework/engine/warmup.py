"""A few generations of a throw-away channel, run by the channel fork server before it forks.

Why: CPython 3.11 rewrites a function's code object the first times it runs (a warm-up
counter in the object, then the specialised bytecode and its inline caches).  Code run
for the first time in a channel process therefore copies the pages of those code objects
from the fork server into the channel, one 4 KiB page per few objects (the code of a
channel's validation, DataSpace, generations, logic engine, codec, APScheduler).  Run
here first, that code is already quickened and mostly specialised in the pages every
channel shares, and what is filled on first use (type and dict-keys versions, lazily
built tables) is filled once: about 2 MiB less per idle channel (``benchmarks/engine.py``).
What it cannot spare: an instruction CPython fails to specialise writes its counter at
every run, so about 1,400 code objects are still written by each channel's boot and first
generations (measured on the no-op channel of ``benchmarks/engine.py``).

What it runs: a channel of the no-op modules below (sources of an int and a small
DataFrame, a transform, the framework's logic engine, a publisher) through the same steps
as a channel process (:func:`prepare_channel`, a :class:`DataSpace`, a
:class:`TaskManager` for :data:`GENERATIONS` generations, :data:`BOOTS` times), on a
SQLite DataSpace in a temporary directory.  Nothing it opens outlives it: the database is closed and deleted,
its threads are joined (a fork server must be single-threaded when it forks), the metrics
it set are cleared (it counts in no channel's metrics), and its log lines go nowhere.  A
failure is not fatal: channels then only cost more memory.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
import warnings
from typing import Any

import pandas as pd

from decisionengine.framework.modules import Publisher, Source, Transform

#: boots of the channel (the second resumes the first's database, as a restarted channel),
#: and generations of each: a function runs 8 times before CPython specialises it, and each
#: instruction a few times more before it is specialised (and no longer writes its counters)
BOOTS = 2
GENERATIONS = 20
#: seconds the warm-up may take before it is abandoned (every channel the server starts
#: waits for it: the fork server forks nothing before it is done)
TIMEOUT = 10.0
CHANNEL = "de-fork-server-warm-up"
DATASOURCE = "decisionengine.framework.dataspace.datasources.sqlalchemy_ds"


@Source.produces(warm_count=int, warm_frame=pd.DataFrame)
class WarmUpSource(Source.Source):
    """An int and a two-row DataFrame, as a typical source delivers."""

    def acquire(self) -> dict[str, Any]:
        return {"warm_count": 1, "warm_frame": pd.DataFrame({"name": ["a", "b"], "value": [1.0, 2.0]})}


@Transform.consumes(warm_count=int, warm_frame=pd.DataFrame)
@Transform.produces(warm_total=int)
class WarmUpTransform(Transform.Transform):
    def transform(self, data_block: Any) -> dict[str, Any]:
        return {"warm_total": self.warm_count(data_block) + len(self.warm_frame(data_block))}


@Publisher.consumes(warm_total=int)
class WarmUpPublisher(Publisher.Publisher):
    def publish(self, data_block: Any) -> None:
        self.warm_total(data_block)


def channel_config(generations: int) -> dict[str, Any]:
    here = __name__
    return {
        "sources": {"warm_source": {"module": here, "name": "WarmUpSource", "schedule": 0.001}},
        "transforms": {"warm_transform": {"module": here, "name": "WarmUpTransform"}},
        "logicengines": {
            "warm_logic": {
                "module": "decisionengine.framework.logicengine.LogicEngine",
                "parameters": {
                    "facts": {"positive": "warm_total > 0"},
                    "rules": {"publish": {"expression": "positive", "actions": ["warm_publisher"]}},
                },
            }
        },
        "publishers": {"warm_publisher": {"module": here, "name": "WarmUpPublisher"}},
        "task_manager": {"max_generations": generations},
    }


def warm_up(boots: int = BOOTS, generations: int = GENERATIONS, timeout: float = TIMEOUT) -> bool:
    """Boot the throw-away channel ``boots`` times, ``generations`` generations each (one
    database: the first boot creates it, the others resume it as a restarted channel does);
    True when all ran and left nothing behind."""
    from prometheus_client import values  # noqa: PLC0415

    value_class = values.ValueClass
    values.ValueClass = values.MutexValue  # no value files of the fork server's pid
    quiet = _Quiet()
    deadline = time.monotonic() + timeout
    try:
        with tempfile.TemporaryDirectory(prefix="de-warm-up-") as directory:
            return all(_boot(directory, generations, deadline) for _ in range(boots))
    except Exception:
        return False
    finally:
        quiet.restore()
        values.ValueClass = value_class
        _clear_metrics()


def _boot(directory: str, generations: int, deadline: float) -> bool:
    """What a channel process does (validate, open the DataSpace, run the TaskManager)."""
    from decisionengine.framework.config.channel_file import parse_channel_config  # noqa: PLC0415
    from decisionengine.framework.dataspace.dataspace import DataSpace  # noqa: PLC0415
    from decisionengine.framework.taskmanager.prepare import prepare_channel  # noqa: PLC0415
    from decisionengine.framework.taskmanager.TaskManager import TaskManager  # noqa: PLC0415

    if time.monotonic() > deadline:
        return False
    global_config = {
        "dataspace": {
            "datasource": {
                "module": DATASOURCE,
                "name": "SQLAlchemyDS",
                "config": {"url": f"sqlite:///{directory}/warm-up.sqlite"},
            }
        }
    }
    plan, settings = prepare_channel(parse_channel_config(channel_config(generations), CHANNEL), global_config)
    before = set(threading.enumerate())
    dataspace = DataSpace(global_config)
    try:
        taskmanager = TaskManager(plan, dataspace, reporter=lambda _snapshot: None, settings=settings)
        runner = threading.Thread(target=taskmanager.run, name=CHANNEL, daemon=True)
        runner.start()
        runner.join(max(deadline - time.monotonic(), 0))
        if runner.is_alive():
            taskmanager.stop()
            runner.join(TIMEOUT)
        ran = taskmanager.generations_run >= generations
    finally:
        dataspace.close()
    for thread in set(threading.enumerate()) - before:  # the scheduler's and its pool's
        thread.join(TIMEOUT)
    return ran and not set(threading.enumerate()) - before


def _clear_metrics() -> None:
    """Forget the label values the warm-up set: a channel's metrics start from its own."""
    from prometheus_client.metrics import MetricWrapperBase  # noqa: PLC0415

    from decisionengine.framework.taskmanager import metrics  # noqa: PLC0415

    with warnings.catch_warnings():  # "not implemented in multi-process mode": it clears ours all the same
        warnings.simplefilter("ignore")
        for metric in vars(metrics).values():
            if isinstance(metric, MetricWrapperBase) and metric._labelnames:
                metric.clear()


class _Quiet:
    """The warm-up's log lines go nowhere: the fork server has no log handler of its own
    (Python's last resort would print warnings to de-server's stderr)."""

    def __init__(self) -> None:
        self.root = logging.getLogger()
        self.level = self.root.level
        self.handler = logging.NullHandler()
        self.last_resort = logging.lastResort
        logging.lastResort = None
        self.root.addHandler(self.handler)
        self.root.setLevel(logging.CRITICAL + 1)

    def restore(self) -> None:
        with contextlib.suppress(ValueError):
            self.root.removeHandler(self.handler)
        self.root.setLevel(self.level)
        logging.lastResort = self.last_resort
