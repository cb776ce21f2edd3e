"""Logging for the server and its channel processes: structlog, one writer, rotated files.

Every process (the server and each channel) renders its log lines itself, with
structlog.  The server's lines go on an in-process queue; a channel's lines travel over
its own pipe to the server (:mod:`.links`), which puts them on the same queue.  A single
listener thread in the server takes them off and writes them: channel lines to
``<log dir>/<channel>.log``, everything else to the server's ``log_file``.  Since only
one thread writes each file, lines from different processes never interleave or split,
and rotation (by size or by time) happens in one place.

Every line a channel process emits (its modules', the framework's and third-party
libraries') carries ``channel=<name>``: a filter on the channel process's handler stamps
it on each record, and the renderer includes it.  Errors of a channel are also copied to
the server log so that one file shows what went wrong where.

A channel process has a log level, and each of its modules may have one of its own (what
the reference's "source log level" becomes here): a line emitted while the framework runs
a module (:mod:`decisionengine.framework.util.running_module`) passes that module's level,
any other line the channel's.  The process's root logger is set to the lowest of them, so
that a module at DEBUG in a channel at INFO still produces its DEBUG lines.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import pathlib
import queue
import threading
from collections.abc import Mapping
from typing import Any

import structlog

from decisionengine.framework.util import running_module

SERVER_LOGGER = "decisionengine"
#: libraries whose INFO lines are noise in a daemon's log (every scheduled run, every migration step)
QUIET_LOGGERS = ("alembic", "apscheduler")
#: the reference's levels: NOTSET lets everything through (a module at NOTSET follows its channel)
LEVELS = ("NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def level_number(level: str | int) -> int:
    """A logging level from its name (case-insensitive) or number; ValueError names it."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    name = str(level).upper()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    return logging.getLevelName(name)


class ModuleLevels(logging.Filter):
    """The log levels of a channel process: the channel's, and each module's own.

    A record emitted while a module runs must reach that module's level, any other the
    channel's.  The root logger's level is kept at the lowest of them (see :meth:`floor`),
    so that records a module wants are produced at all; this filter, on the channel's
    handler, then drops what the level that applies does not want.
    """

    def __init__(self, channel_level: int) -> None:
        super().__init__()
        self.channel_level = channel_level
        self.modules: dict[str, int] = {}

    def floor(self) -> int:
        return min([self.channel_level, *self.modules.values()])

    def filter(self, record: logging.LogRecord) -> bool:
        key = running_module.current()
        threshold = self.modules.get(key, self.channel_level) if key is not None else self.channel_level
        return record.levelno >= threshold


#: set in a channel process by :func:`attach_to_queue` (None in the server)
_module_levels: ModuleLevels | None = None


class ChannelStamp(logging.Filter):
    """Stamp every record of a channel process with the channel's name."""

    def __init__(self, channel: str) -> None:
        super().__init__()
        self.channel = channel

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "channel", None):
            record.channel = self.channel
        return True


def _add_channel(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Put the record's channel (stamped by :class:`ChannelStamp`) into the event."""
    record = event.get("_record")
    channel = getattr(record, "channel", None) if record is not None else None
    if channel and "channel" not in event:
        event["channel"] = channel
    return event


_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=False),
]


def _formatter(json_lines: bool) -> structlog.stdlib.ProcessorFormatter:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(
            colors=False, pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
        )
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[
            _add_channel,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if json_lines else _identity,
            renderer,
        ],
    )


def _identity(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    return event


def configure_structlog() -> None:
    """Route structlog through the standard library, so one handler set serves both."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED_PROCESSORS,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


class _RenderingQueueHandler(logging.handlers.QueueHandler):
    """Render the line in the producing process (where structlog's event dict lives) and
    send a plain record, so nothing unpicklable crosses the process boundary."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        message = self.format(record)
        channel = getattr(record, "channel", None)
        if channel and "\n" in message:
            # Tracebacks and multi-line messages: every line still names its channel.
            first, *rest = message.split("\n")
            tag = f"channel={channel}"
            if tag not in first:
                first += f" {tag}"
            message = "\n".join([first, *(f"{tag} | {line}" for line in rest)])
        return logging.makeLogRecord(
            {
                "name": record.name,
                "levelno": record.levelno,
                "levelname": record.levelname,
                "msg": message,
                "created": record.created,
                "process": record.process,
                "channel": channel,
            }
        )


def attach_to_queue(
    log_queue: Any,
    level: str | int = "INFO",
    channel: str | None = None,
    json_lines: bool = False,
) -> None:
    """Send this process's logging to ``log_queue`` (call once, at process start)."""
    global _module_levels
    configure_structlog()
    handler = _RenderingQueueHandler(log_queue)
    handler.setFormatter(_formatter(json_lines))
    _module_levels = None
    if channel is not None:
        handler.addFilter(ChannelStamp(channel))
        _module_levels = ModuleLevels(level_number(level))
        handler.addFilter(_module_levels)
        structlog.contextvars.bind_contextvars(channel=channel)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_number(level))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)


def set_level(level: str | int) -> None:
    """Change this process's log level (a channel process: the channel's) at run time."""
    number = level_number(level)
    if _module_levels is not None:
        _module_levels.channel_level = number
        number = _module_levels.floor()
    logging.getLogger().setLevel(number)


def get_level() -> str:
    if _module_levels is not None:
        return logging.getLevelName(_module_levels.channel_level)
    return logging.getLevelName(logging.getLogger().getEffectiveLevel())


def set_module_level(key: str, level: str | int) -> None:
    """In a channel process: the level of the lines emitted while module ``key`` runs
    (NOTSET: the channel's level again)."""
    if _module_levels is None:
        raise RuntimeError("module log levels exist only in a channel process")
    number = level_number(level)
    if number == logging.NOTSET:
        _module_levels.modules.pop(key, None)
    else:
        _module_levels.modules[key] = number
    logging.getLogger().setLevel(_module_levels.floor())


class _Writer(logging.Handler):
    """Writes already rendered lines to the server file or the channel's file."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(logging.DEBUG)
        self.settings = dict(settings)
        log_file = settings.get("log_file")
        self.log_dir = pathlib.Path(log_file).parent if log_file else None
        self.server = self._file(pathlib.Path(log_file)) if log_file else logging.StreamHandler()
        self.channels: dict[str, logging.Handler] = {}
        self.lock_files = threading.Lock()

    def _file(self, path: pathlib.Path) -> logging.Handler:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler
        if self.settings.get("file_rotate_by", "size") == "time":
            handler = logging.handlers.TimedRotatingFileHandler(
                path,
                when=self.settings.get("rotation_time_unit", "D"),
                interval=int(self.settings.get("rotation_time_interval", 1)),
                backupCount=int(self.settings.get("max_backup_count", 6)),
            )
        else:
            handler = logging.handlers.RotatingFileHandler(
                path,
                maxBytes=int(self.settings.get("max_file_size", 200_000_000)),
                backupCount=int(self.settings.get("max_backup_count", 6)),
            )
        handler.setFormatter(logging.Formatter("%(message)s"))
        return handler

    def channel_file(self, channel: str) -> pathlib.Path | None:
        return self.log_dir / f"{channel}.log" if self.log_dir else None

    def emit(self, record: logging.LogRecord) -> None:
        channel = getattr(record, "channel", None)
        if channel and self.log_dir is not None:
            with self.lock_files:
                handler = self.channels.get(channel)
                if handler is None:
                    handler = self.channels[channel] = self._file(self.log_dir / f"{channel}.log")
            handler.handle(record)
            if record.levelno >= logging.ERROR:
                self.server.handle(record)
        else:
            self.server.handle(record)

    def close(self) -> None:
        for handler in [self.server, *self.channels.values()]:
            with contextlib.suppress(Exception):
                handler.close()
        super().close()


class LogService:
    """The server side: one in-process queue for every line, and the one thread writing files.

    The server's own threads log into the queue directly; channel processes' lines arrive
    over their links (:mod:`.links`) and are put on the same queue by :meth:`accept`.
    """

    def __init__(self, settings: Mapping[str, Any], context: Any = None) -> None:
        self.settings = dict(settings)
        self.queue: queue.Queue[logging.LogRecord] = queue.Queue()
        self.writer = _Writer(self.settings)
        self.listener = logging.handlers.QueueListener(self.queue, self.writer, respect_handler_level=False)
        self.json_lines = str(self.settings.get("format", "text")).lower() == "json"

    def accept(self, record: logging.LogRecord) -> None:
        """A line from a channel process (already rendered there)."""
        self.queue.put_nowait(record)

    def start(self) -> None:
        self.listener.start()
        attach_to_queue(self.queue, self.settings.get("log_level", "INFO"), json_lines=self.json_lines)

    def channel_log_file(self, channel: str) -> pathlib.Path | None:
        return self.writer.channel_file(channel)

    def stop(self) -> None:
        """Write out what is queued, then stop the listener and close the files."""
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        with contextlib.suppress(Exception):
            self.listener.stop()
        self.writer.close()
