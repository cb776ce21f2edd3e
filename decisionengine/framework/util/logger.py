"""The framework's structlog loggers, and where their lines go when nobody configured structlog.

Inside ``de-server`` and its channel processes structlog is configured at start
(``engine/logs.py``) and every line goes through the server's log files.  Used as a library
(a script reading the DataSpace, a test running a module, an application embedding a
channel) nothing configures structlog, and structlog's own default prints to stdout:
neither pytest's log capture nor the host application's ``logging`` handlers would see the
framework's lines.  So the loggers :func:`get_logger` returns decide at every call:

* structlog configured (by the server, the host application, or a test's
  ``structlog.testing.capture_logs``): structlog's configuration, unchanged;
* structlog not configured: the standard ``logging`` logger of the same name, with the event
  and its key/value pairs rendered into the message (``"generation failed channel='c'
  error=..."``), exceptions passed as ``exc_info`` (so handlers format the traceback), and
  the whole event dict on the record as ``record.structlog_event`` for handlers that want
  the fields.

Nothing global is changed: importing the framework never configures structlog for the
host application.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import structlog

#: the standard-library logger (and structlog logger name) of the framework
FRAMEWORK_LOGGER = "decisionengine"
#: the attribute of a ``logging.LogRecord`` holding the structlog event dict (library use)
EVENT_ATTRIBUTE = "structlog_event"


def _render_for_stdlib(
    _logger: Any, _method: str, event_dict: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The last processor: (args, kwargs) for the standard-library logger's method."""
    fields = dict(event_dict)
    exc_info = fields.pop("exc_info", None)
    stack_info = bool(fields.pop("stack_info", False))
    event = fields.pop("event", "")
    fields.pop("level", None)
    rendered = " ".join(f"{key}={value!r}" for key, value in fields.items())
    message = f"{event} {rendered}" if rendered else str(event)
    return (message,), {
        "exc_info": exc_info or None,
        "stack_info": stack_info,
        "extra": {EVENT_ATTRIBUTE: dict(event_dict)},
    }


_STDLIB_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.PositionalArgumentsFormatter(),
    _render_for_stdlib,
]


class FrameworkLogger:
    """A structlog logger that follows structlog's configuration once there is one, and
    writes to the standard ``logging`` module until then (see the module docstring).

    It offers what the framework and modules use of a structlog bound logger: ``bind``,
    ``new``, ``unbind``, ``try_unbind`` and the logging methods (``debug`` ... ``critical``,
    ``exception``, ``log``), each looked up on the logger of the moment.
    """

    __slots__ = ("_context", "_name")

    def __init__(self, name: str, context: Mapping[str, Any] | None = None) -> None:
        self._name = name
        self._context: dict[str, Any] = dict(context or {})

    def _target(self) -> Any:
        if structlog.is_configured():
            return structlog.get_logger(self._name).bind(**self._context)
        return structlog.wrap_logger(
            logging.getLogger(self._name),
            processors=_STDLIB_PROCESSORS,
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=False,
        ).bind(**self._context)

    def bind(self, **values: Any) -> FrameworkLogger:
        return FrameworkLogger(self._name, {**self._context, **values})

    def new(self, **values: Any) -> FrameworkLogger:
        return FrameworkLogger(self._name, values)

    def unbind(self, *keys: str) -> FrameworkLogger:
        missing = [key for key in keys if key not in self._context]
        if missing:
            raise KeyError(missing[0])
        return FrameworkLogger(self._name, {k: v for k, v in self._context.items() if k not in keys})

    def try_unbind(self, *keys: str) -> FrameworkLogger:
        return FrameworkLogger(self._name, {k: v for k, v in self._context.items() if k not in keys})

    def __getattr__(self, name: str) -> Any:
        # debug/info/warning/error/exception/critical/log/isEnabledFor...: on the current logger
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._target(), name)

    def __repr__(self) -> str:
        return f"<FrameworkLogger {self._name!r} context={self._context!r}>"


def get_logger(name: str = FRAMEWORK_LOGGER, **initial_values: Any) -> FrameworkLogger:
    """The logger framework code and modules use: ``get_logger().bind(module=...)``."""
    return FrameworkLogger(name, initial_values)
