"""The entry point of a channel's own process.

The server starts one process per channel (forked from a fork server that has imported
the framework; nothing of the server is inherited but what is passed here), so that a module that raises,
hangs or kills its interpreter takes down only its channel.  The process:

* sends its log lines and events to the server over a pipe of its own (:mod:`.links`),
  log lines stamped with the channel name;
* writes its metrics to the server's prometheus multiprocess directory;
* validates the channel (imports its modules, builds them once, checks the product
  graph): module code runs here, never in the server, so a slow or broken module cannot
  hold up the server or the other channels; the result (or the reason it is invalid) is
  reported to the server;
* opens its own DataSpace connection pool;
* runs the channel's TaskManager, reporting status snapshots over the same pipe;
* obeys commands from the server (stop, the channel's and its sources' log levels) and SIGTERM/SIGINT (stop cleanly:
  the generation in progress finishes or is rolled back, publishers are shut down);
* dies (SIGKILL) with the server, however the server dies (:mod:`.supervision`): a
  channel whose server is gone commits nothing more and releases its channel's lock.
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
class ChannelLaunch:
    """Everything a channel process needs, picklable."""

    config: Any  # ChannelConfig: the channel file, read but not validated
    global_config: dict[str, Any]
    link: Any  # the writing end of this process's own pipe to the server (see links)
    command_queue: Any
    log_level: str
    metrics_dir: str | None
    json_logs: bool = False
    #: {source key: level} set by the operator (``set_source_log_level``), kept across restarts
    module_log_levels: dict[str, str] = field(default_factory=dict)
    #: the cluster member this channel runs for (see engine.cluster); None: the channel's own lock
    server_id: str | None = None
    #: (directory, count) of the server's connection slots (PostgreSQL; see dataspace.connection_gate)
    connection_slots: tuple[str, int] | None = None
    #: sources of the channel that run shared, in a process of their own (see engine.shared_sources)
    shared_sources: frozenset[str] = frozenset()


def main(launch: ChannelLaunch) -> None:
    """Run one channel until it stops; the exit code says how it ended."""
    parent_death_armed = supervision.guard_forked_child()  # first: the server may already be gone
    supervision.name_this_process("de-channel")
    supervision.yield_to_the_server(launch.global_config)
    memory_merging.request(launch.global_config)
    name = launch.config.name
    if launch.metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = launch.metrics_dir
    # Imports after the environment is set: prometheus_client reads it when first imported.
    from decisionengine.framework.engine import logs  # noqa: PLC0415
    from decisionengine.framework.taskmanager.prepare import prepare_channel  # noqa: PLC0415
    from decisionengine.framework.taskmanager.TaskManager import TaskManager  # noqa: PLC0415

    sender = open_link(launch, name)
    logger = get_logger().bind(module="channel_process", channel=name)
    if parent_death_armed is False:
        logger.warning(
            "prctl(PR_SET_PDEATHSIG) is unavailable: if the server is killed, this channel process "
            "ends only when it sees the server's pipe close"
        )

    def report(snapshot: dict[str, Any]) -> None:
        # what the link to the server holds that it has not written yet (queue_status)
        snapshot["link_backlog"] = sender.backlog()
        sender.event("status", name, snapshot)

    taskmanager: TaskManager | None = None
    stop_requested = threading.Event()
    #: what the server forwarded about shared sources before the task manager existed
    early: dict[tuple[str, str], Any] = {}
    early_lock = threading.Lock()

    def shared_source_news(kind: str, key: str, payload: Any) -> None:
        with early_lock:
            if taskmanager is None:
                early[(kind, key)] = payload  # the latest of each kind is what counts
                return
            target = taskmanager
        if kind == "source_delivery":
            target.deliver_shared(key, payload)
        else:
            target.shared_source_failing(key, payload)

    def request_stop(*_: Any) -> None:
        stop_requested.set()
        if taskmanager is not None:
            taskmanager.stop()

    stop_on_signals(request_stop)

    def claim_now() -> None:
        if taskmanager is not None:
            taskmanager.claim_now()

    def set_log_level(level: str) -> None:
        logs.set_level(level)
        logger.info("channel log level changed", level=level)

    def set_module_log_level(key: str, level: str) -> None:
        logs.set_module_level(key, level)
        logger.info("module log level changed", module=key, level=level)

    news: dict[tuple[str, str], Any] = {}
    news_ready = threading.Condition()

    def take_news(kind: str) -> Any:
        def take(key: str, payload: Any) -> None:
            with news_ready:  # handled by the news thread: reading a delivery waits on the database
                news[(kind, key)] = payload  # only the latest of each counts
                news_ready.notify()

        return take

    def pass_news_on() -> None:
        """Shared sources' deliveries and failures, newest first, off the command thread: a
        channel busy with a generation reads the next delivery when it can, and the server's
        command queue never fills up behind it (deliveries it missed meanwhile are replaced
        by the newest, which is the one a generation uses)."""
        while True:
            with news_ready:
                while not news:
                    news_ready.wait()
                items = list(news.items())
                news.clear()
            for (kind, key), payload in items:
                try:
                    shared_source_news(kind, key, payload)
                except Exception:
                    logger.exception("could not take a shared source's news", source=key, kind=kind)

    threading.Thread(target=pass_news_on, name=f"{name}-source-news", daemon=True).start()
    obey_commands(
        name,
        launch.command_queue,
        request_stop,
        {
            "claim_now": claim_now,
            "set_log_level": set_log_level,
            "set_module_log_level": set_module_log_level,
            "source_delivery": take_news("source_delivery"),
            "source_failing": take_news("source_failing"),
        },
    )

    try:
        # the same step as ``de-server --check``: what the check passes, a start runs
        plan, settings = prepare_channel(launch.config, launch.global_config)
    except Exception as exc:
        reason = f"invalid configuration: {exc}"
        logger.error("channel configuration is invalid; the channel will not run", reason=reason)
        refuse(sender, name, reason)
    sender.event("plan", name, describe_plan(plan))
    try:
        dataspace = open_dataspace(launch)
        built = TaskManager(
            plan,
            dataspace,
            reporter=report,
            settings=settings,
            server_id=launch.server_id,
            shared_sources=launch.shared_sources,
        )
        with early_lock:
            taskmanager = built
            waiting = dict(early)
            early.clear()
        for (kind, key), payload in sorted(waiting.items(), key=lambda item: item[0][0] != "source_delivery"):
            shared_source_news(kind, key, payload)
        if stop_requested.is_set():
            taskmanager.stop()
        final = taskmanager.run()
        dataspace.close()
    except Exception as exc:
        logger.exception("channel process failed", error=f"{type(exc).__name__}: {exc}")
        sender.event("failed", name, f"{type(exc).__name__}: {exc}")
        final = None
    end(sender, name, final)


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
