"""What every process the server forks for its work runs in: channel processes and shared
source processes alike (:mod:`.channel_process`, :mod:`.source_process`).

Both talk to the server the same way, so they share one shell: the link their log lines
and events go over, their DataSpace (gated by the server's connection slots), SIGTERM and
SIGINT meaning "stop cleanly", the command queue the server writes to, and how they end
(an ``exited`` event, the link flushed, an exit code that says how it went).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from decisionengine.framework.util.signals import on_signals

EXIT_OK = 0
EXIT_ERROR = 1

#: a command's handler: called with the command's arguments
Handler = Callable[..., None]


def stop_on_signals(request_stop: Callable[..., None]) -> None:
    """SIGTERM and SIGINT ask the process to stop cleanly (as the ``stop`` command does);
    ``request_stop`` runs in a thread of its own, not in the handler (see util.signals)."""
    on_signals(request_stop)


def obey_commands(
    name: str, command_queue: Any, request_stop: Callable[[], None], handlers: dict[str, Handler]
) -> threading.Thread:
    """Read the server's commands in a thread of their own until ``stop`` (or the queue is
    gone): ``stop`` calls ``request_stop``; any other command its handler, unknown ones are
    ignored (a newer server may send what this process does not know)."""

    def obey() -> None:
        while True:
            try:
                command, *args = command_queue.get()
            except (EOFError, OSError):
                return
            if command == "stop":
                request_stop()
                return
            handler = handlers.get(command)
            if handler is not None:
                handler(*args)

    thread = threading.Thread(target=obey, name=f"{name}-commands", daemon=True)
    thread.start()
    return thread


def refuse(sender: Any, name: str, reason: str) -> NoReturn:
    """The configuration is invalid: tell the server (it will not restart the process for
    it) and exit in ERROR."""
    from decisionengine.framework.taskmanager.states import State  # noqa: PLC0415

    sender.event("invalid", name, reason)
    sender.event("exited", name, State.ERROR.value)
    finish(sender)
    sys.exit(EXIT_ERROR)


def end(sender: Any, name: str, final: Any) -> NoReturn:
    """Report the final state (None: the process failed) and exit with the code for it."""
    from decisionengine.framework.taskmanager.states import State  # noqa: PLC0415

    sender.event("exited", name, final.value if final is not None else State.ERROR.value)
    finish(sender)
    sys.exit(EXIT_OK if final is State.SHUTDOWN else EXIT_ERROR)


def open_link(launch: Any, name: str) -> Any:
    """The process's link to the server (a ``LinkSender``), with its log lines going over
    it at the launch's levels: what the process does first (after the metrics directory is
    in the environment)."""
    from decisionengine.framework.engine import logs  # noqa: PLC0415
    from decisionengine.framework.engine.links import LinkSender, log_queue  # noqa: PLC0415

    sender = LinkSender(launch.link)
    logs.attach_to_queue(log_queue(sender), launch.log_level, channel=name, json_lines=launch.json_logs)
    for key, level in launch.module_log_levels.items():
        logs.set_module_level(key, level)
    return sender


def open_dataspace(launch: Any, name: str | None = None) -> Any:
    """The channel's DataSpace; under a server on PostgreSQL, a connection only while a
    transaction runs, and only with one of the server's connection slots.

    ``dataspace.channel_url``, when set, replaces the datasource's url here: channel
    processes use no session state (no session advisory lock, no ``LISTEN``, no ``SET``,
    no server-side prepared statement with psycopg2), so they may go through a PgBouncer
    in transaction pooling mode while the server's own connections may not."""
    from decisionengine.framework.dataspace.dataspace import DataSpace  # noqa: PLC0415

    dataspace_config = dict(launch.global_config["dataspace"])
    datasource = dict(dataspace_config.get("datasource") or {})
    datasource["config"] = dict(datasource.get("config") or {})
    if dataspace_config.get("channel_url"):
        datasource["config"]["url"] = dataspace_config["channel_url"]
    dataspace_config["datasource"] = datasource
    if launch.connection_slots is None:
        return DataSpace({**launch.global_config, "dataspace": dataspace_config})
    from decisionengine.framework.dataspace.connection_gate import ConnectionGate, gated_config  # noqa: PLC0415

    directory, count = launch.connection_slots
    datasource["config"] = gated_config(datasource["config"], name or launch.config.name)
    gate = ConnectionGate(directory, count)
    gate.install()  # every engine of this process, before the DataSpace's first connection
    dataspace = DataSpace({**launch.global_config, "dataspace": dataspace_config})
    engine = dataspace.datasource.engine
    gate.close_when_idle(engine)
    dataspace.idle_hook = gate.idle_hook(engine.pool)
    dataspace.connection_at_hand = lambda: gate.in_use() > 0
    dataspace.idle(long=True)  # what opening it left in the pool (no watch on it yet)
    return dataspace


def finish(sender: Any) -> None:
    """Flush logging and the link, so the server gets the last lines and events before we exit."""
    import logging  # noqa: PLC0415

    logging.shutdown()
    sender.close()
