"""The entry point of a shared source's own process.

A source that two or more channels name with the same configuration runs here, once,
isolated as a channel is (forked from the fork server, its log lines and events over a
pipe of its own, dead with the server, killed by the hang watchdog, restarted after a
crash).  It validates its entry (import, parameters, construction), opens the DataSpace,
and runs a :class:`~decisionengine.framework.taskmanager.shared_source.SourceRunner`:
each delivery is written once, then reported as a ``delivered`` event that the server
forwards to every consuming channel.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from decisionengine.framework.engine import memory_merging, supervision
from decisionengine.framework.engine.process_shell import (
    end,
    obey_commands,
    open_dataspace,
    open_link,
    refuse,
    stop_on_signals,
)
from decisionengine.framework.util.logger import get_logger


@dataclass(frozen=True)
class SourceLaunch:
    """Everything a shared source's process needs, picklable."""

    name: str  # "source:<key>": how the server and the logs know the process
    entry: Any  # the source's ModuleEntry, as the channels configure it
    channel_name: str  # the channel_name its instance receives (the first consumer's)
    taskmanager: str  # the DataSpace task manager its deliveries are stored under
    module_timeout: float
    data_lifetime: float
    global_config: dict[str, Any]
    link: Any
    command_queue: Any
    log_level: str
    metrics_dir: str | None
    json_logs: bool = False
    module_log_levels: dict[str, str] = field(default_factory=dict)
    connection_slots: tuple[str, int] | None = None
    #: acquired once for the cluster, claimed for this server (None: for this server's channels only)
    server_id: str | None = None


def main(launch: SourceLaunch) -> None:
    """Run one shared source until it is stopped; the exit code says how it ended."""
    supervision.guard_forked_child()
    supervision.name_this_process("de-source")
    supervision.yield_to_the_server(launch.global_config)
    memory_merging.request(launch.global_config)
    name = launch.name
    if launch.metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = launch.metrics_dir
    from decisionengine.framework.config.validation import validate_source  # noqa: PLC0415
    from decisionengine.framework.engine import logs  # noqa: PLC0415
    from decisionengine.framework.taskmanager.shared_source import SourceRunner  # noqa: PLC0415

    sender = open_link(launch, name)
    logger = get_logger().bind(module="source_process", channel=name)
    runner: SourceRunner | None = None
    stop_requested = threading.Event()

    def request_stop(*_: Any) -> None:
        stop_requested.set()
        if runner is not None:
            runner.stop()

    def claim_now() -> None:
        if runner is not None:
            runner.claim_now()

    stop_on_signals(request_stop)
    obey_commands(
        name,
        launch.command_queue,
        request_stop,
        {"claim_now": claim_now, "set_log_level": logs.set_level, "set_module_log_level": logs.set_module_level},
    )
    try:
        strict = bool(launch.global_config.get("strict_parameters"))
        # the framework sets the instance's channel_name: the first consumer's name
        spec = validate_source(launch.entry, launch.channel_name, strict_parameters=strict)
    except Exception as exc:
        reason = f"invalid configuration: {exc}"
        logger.error("shared source configuration is invalid", reason=reason)
        refuse(sender, name, reason)
    final = None
    try:
        dataspace = open_dataspace(launch, name)
        runner = SourceRunner(
            spec,
            dataspace,
            name=name,
            taskmanager=launch.taskmanager,
            module_timeout=launch.module_timeout,
            data_lifetime=launch.data_lifetime,
            reporter=lambda snapshot: sender.event("status", name, {**snapshot, "link_backlog": sender.backlog()}),
            on_delivery=lambda delivery: sender.event("delivered", name, delivery),
            server_id=launch.server_id,
        )
        if stop_requested.is_set():
            runner.stop()
        final = runner.run()
        dataspace.close()
    except Exception as exc:
        logger.exception("shared source process failed", error=f"{type(exc).__name__}: {exc}")
        sender.event("failed", name, f"{type(exc).__name__}: {exc}")
    end(sender, name, final)
