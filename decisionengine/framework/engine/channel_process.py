"""The entry point of a channel's own process.

The server starts one process per channel (``multiprocessing`` "spawn": a fresh
interpreter, nothing inherited but what is passed here), so that a module that raises,
hangs or kills its interpreter takes down only its channel.  The process:

* sends its log lines to the server's log queue, stamped with the channel name;
* writes its metrics to the server's prometheus multiprocess directory;
* validates the channel (imports its modules, builds them once, checks the product
  graph): module code runs here, never in the server, so a slow or broken module cannot
  hold up the server or the other channels; the result (or the reason it is invalid) is
  reported to the server;
* opens its own DataSpace connection pool;
* runs the channel's TaskManager, reporting status snapshots on the event queue;
* obeys commands from the server (stop, log level) and SIGTERM/SIGINT (stop cleanly:
  the generation in progress finishes or is rolled back, publishers are shut down).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1


@dataclass(frozen=True)
class ChannelLaunch:
    """Everything a channel process needs, picklable."""

    config: Any  # ChannelConfig: the channel file, read but not validated
    global_config: dict[str, Any]
    log_queue: Any
    event_queue: Any
    command_queue: Any
    log_level: str
    metrics_dir: str | None
    json_logs: bool = False


def _send(queue: Any, *message: Any) -> None:
    with contextlib.suppress(Exception):
        queue.put(message)


def main(launch: ChannelLaunch) -> None:
    """Run one channel until it stops; the exit code says how it ended."""
    name = launch.config.name
    if launch.metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = launch.metrics_dir
    # Imports after the environment is set: prometheus_client reads it when first imported.
    from decisionengine.framework.config.validation import validate_channel  # noqa: PLC0415
    from decisionengine.framework.dataspace.dataspace import DataSpace  # noqa: PLC0415
    from decisionengine.framework.engine import logs  # noqa: PLC0415
    from decisionengine.framework.taskmanager.settings import TaskManagerSettings  # noqa: PLC0415
    from decisionengine.framework.taskmanager.states import State  # noqa: PLC0415
    from decisionengine.framework.taskmanager.TaskManager import TaskManager  # noqa: PLC0415

    logs.attach_to_queue(launch.log_queue, launch.log_level, channel=name, json_lines=launch.json_logs)
    import structlog  # noqa: PLC0415

    logger = structlog.get_logger("decisionengine").bind(module="channel_process", channel=name)

    def report(snapshot: dict[str, Any]) -> None:
        _send(launch.event_queue, "status", name, snapshot)

    taskmanager: TaskManager | None = None
    stop_requested = threading.Event()

    def request_stop(*_: Any) -> None:
        stop_requested.set()
        if taskmanager is not None:
            taskmanager.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def obey_commands() -> None:
        while True:
            try:
                command, *args = launch.command_queue.get()
            except (EOFError, OSError):
                return
            if command == "stop":
                request_stop()
                return
            if command == "set_log_level":
                logs.set_level(args[0])
                logger.info("channel log level changed", level=args[0])

    threading.Thread(target=obey_commands, name=f"{name}-commands", daemon=True).start()

    try:
        plan = validate_channel(launch.config)
        settings = TaskManagerSettings.from_config(plan.task_manager, name)
    except Exception as exc:
        reason = f"invalid configuration: {exc}"
        logger.error("channel configuration is invalid; the channel will not run", reason=reason)
        _send(launch.event_queue, "failed", name, reason)
        _send(launch.event_queue, "exited", name, State.ERROR.value)
        logging_shutdown()
        sys.exit(EXIT_ERROR)
    _send(launch.event_queue, "plan", name, describe_plan(plan))
    try:
        dataspace = DataSpace(launch.global_config)
        taskmanager = TaskManager(plan, dataspace, reporter=report, settings=settings)
        if stop_requested.is_set():
            taskmanager.stop()
        final = taskmanager.run()
        dataspace.close()
    except Exception as exc:
        logger.exception("channel process failed", error=f"{type(exc).__name__}: {exc}")
        _send(launch.event_queue, "failed", name, f"{type(exc).__name__}: {exc}")
        final = None
    _send(launch.event_queue, "exited", name, final.value if final is not None else State.ERROR.value)
    logging_shutdown()
    sys.exit(EXIT_OK if final is State.SHUTDOWN else EXIT_ERROR)


def logging_shutdown() -> None:
    """Flush the queue handler so the server receives the last lines before we exit."""
    import logging  # noqa: PLC0415

    logging.shutdown()


def describe_plan(plan: Any) -> dict[str, Any]:
    """A validated channel as plain data (no classes), for the server's graph questions."""
    return {
        "name": plan.name,
        "path": plan.path,
        "modules": [
            {
                "key": spec.key,
                "kind": spec.kind,
                "module": spec.module,
                "class_name": spec.class_name,
                "produces": sorted(spec.produces),
                "consumes": sorted(spec.consumes),
                "schedule": spec.schedule,
            }
            for spec in plan.modules()
        ],
        "transform_order": [spec.key for spec in plan.transforms],
        "producers": dict(plan.producers),
        "publisher_policy": plan.publisher_policy.name,
        "warnings": list(plan.warnings),
    }
