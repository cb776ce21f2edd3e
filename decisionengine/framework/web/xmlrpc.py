"""XML-RPC: the reference server's methods, answered by the control service.

:class:`XmlRpcMethods` lists every method a client may call, with the reference names and
positional arguments; each one asks :class:`~.service.ControlService` and renders the
answer as text (tables, or JSON text with ``format="json"``).  The method table is the
allow-list: a name not defined here is an unknown method.

The reference 1.7 ``de-client`` and ``de-query-tool``, and the scripts written against
them, call these methods with the reference's positional arguments, so a reference
argument position keeps its meaning here (``print_product(product, columns, query, types,
format)``); our own arguments come after them (``channel``, ``max_rows``...) or in methods
of our own (``get_product``).  ``print_product`` and ``query_tool`` answer in the
reference's text layout (:mod:`.reference_format`).

:class:`XmlRpcDispatcher` decodes a call with the standard library, checks its arguments
against the method's signature, runs it and encodes the answer.  A malformed request, an
unknown method, wrong arguments and a refused request each come back as a fault with a
clear message, never as a stack trace.
"""

from __future__ import annotations

import datetime
import inspect
import time
import xmlrpc.client
from typing import Any

from decisionengine.framework.util.logger import get_logger
from decisionengine.framework.web import presentation, reference_format
from decisionengine.framework.web.service import Caller, ControlService, InvalidArgument, ServiceError

PARSE_ERROR = -32700
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
#: a refused or failed request; faultString says why
SERVER_ERROR = 1
#: refusals for want of credentials have codes of their own, as their HTTP statuses
FAULT_CODES = {"unauthorized": 401, "forbidden": 403}


def _fault(code: int, message: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True, allow_none=True).encode()


# -- argument types ------------------------------------------------------------------------------

#: What each XML-RPC argument may be, by parameter name (the same name means the same thing in
#: every method).  The allow-list is checked before a method runs, so a value of another type is
#: a fault naming the argument and the types it takes, never a Python error from deep inside
#: (``'bool' object has no attribute 'lower'``).  Values are then checked by the control
#: service (a known channel, a number in range...).  ``None`` is XML-RPC's ``nil``.
_TEXT = (str,)
_NUMBER = (int, float, str, type(None))  # seconds; numeric text is accepted, as before
ARGUMENT_TYPES: dict[str, tuple[type, ...]] = {
    "channel": _TEXT,
    "product": _TEXT,
    "source": _TEXT,
    "level": _TEXT,
    "state": _TEXT,
    "fmt": (str, type(None)),
    "columns": (str, list, type(None)),
    "query": (str, type(None)),
    "types": (bool, int, type(None)),
    "include_stopped": (bool, int, type(None)),
    "max_rows": (int, str, type(None)),
    "timeout": _NUMBER,
    "maybe_timeout": _NUMBER,
    "delay": _NUMBER,
    "start_time": (str, int, float, datetime.datetime, type(None)),
}
#: optional channel arguments take nil too (``None``: every channel, as their default)
OPTIONAL_TEXT = {"channel"}
#: how a parameter is named in messages: the reference's name where ours differs
DISPLAY_NAMES = {"fmt": "format"}
#: what each argument takes, in words, for the fault's message
EXPECTED: dict[str, str] = {
    "channel": "a non-empty string (a channel name)",
    "product": "a non-empty string (a product name)",
    "source": "a non-empty string (a source name)",
    "level": "a non-empty string (a log level name)",
    "state": "a non-empty string (a state name)",
    "fmt": "a format name (a string) or nil",
    "columns": "a list of column names, a comma-separated string or nil",
    "query": "a query (a string) or nil",
    "types": "true or false (0 or 1, or nil)",
    "include_stopped": "true or false (0 or 1, or nil)",
    "max_rows": "a non-negative integer or nil",
    "timeout": "a number of seconds (or numeric text) or nil",
    "maybe_timeout": "a number of seconds (or numeric text) or nil",
    "delay": "a number of seconds (or numeric text) or nil",
    "start_time": "a time (text, epoch seconds or a date) or nil",
}


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "nil"}.get(
        type(value), type(value).__name__
    )


def check_argument_types(name: str, method: Any, bound: inspect.BoundArguments) -> None:
    """Refuse an argument whose type is not on :data:`ARGUMENT_TYPES`' list for it.

    ``bool`` is a subclass of ``int`` in Python; it passes only where ``bool`` is listed, so
    ``True`` is never a timeout or a row count.
    """
    parameters = inspect.signature(method).parameters
    for parameter, value in bound.arguments.items():
        if parameter == "caller":
            continue
        allowed = ARGUMENT_TYPES[parameter]
        if parameter in OPTIONAL_TEXT and parameters[parameter].default is not inspect.Parameter.empty:
            allowed = (*allowed, type(None))
        ok = bool in allowed if isinstance(value, bool) else isinstance(value, allowed)
        if parameter == "columns" and ok and isinstance(value, list):
            ok = all(isinstance(item, str) for item in value)
        if not ok:
            shown = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:57]}..."
            raise InvalidArgument(
                f"{DISPLAY_NAMES.get(parameter, parameter)} must be {EXPECTED[parameter]}, "
                f"not {_type_name(value)} {shown}"
            )


def _format(fmt: Any, allowed: tuple[str, ...]) -> str:
    try:
        return presentation.check_format(fmt if isinstance(fmt, str) else "", allowed)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _reference_format(fmt: Any) -> str:
    try:
        return reference_format.check_format(fmt)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _max_rows(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"max_rows must be a non-negative integer, not {value!r}")
    return value


class XmlRpcMethods:
    """The methods of the reference server (names, positional arguments, text answers)."""

    def __init__(self, service: ControlService) -> None:
        self.service = service

    @classmethod
    def names(cls) -> list[str]:
        return sorted(
            name
            for name, member in vars(cls).items()
            if not name.startswith("_") and inspect.isfunction(member) and name != "names"
        )

    def ping(self, caller: Caller) -> str:
        return self.service.ping(caller)

    def status(self, caller: Caller, fmt: str = "table") -> str:
        fmt = _format(fmt, ("table", "json"))
        status = self.service.status(caller)
        if fmt == "json":
            return presentation.dumps(status)
        return presentation.status_text(status, time.time())

    def start_channel(self, caller: Caller, channel: str) -> str:
        return self.service.start_channel(caller, channel)

    def stop_channel(self, caller: Caller, channel: str) -> str:
        return self.service.stop_channel(caller, channel)

    def start_channels(self, caller: Caller) -> str:
        started = self.service.start_channels(caller)
        return f"started: {', '.join(started) or 'none'}"

    def stop_channels(self, caller: Caller) -> str:
        stopped, killed = self.service.stop_channels(caller)
        return f"stopped: {', '.join(stopped) or 'none'}" + (f"; killed: {', '.join(killed)}" if killed else "")

    def drain(self, caller: Caller, fmt: str = "table") -> str:
        """Hand this server's channels to the other servers (answers at once; poll drain_status)."""
        return _drain_text(self.service.drain(caller), _format(fmt, ("table", "json")))

    def undrain(self, caller: Caller, fmt: str = "table") -> str:
        return _drain_text(self.service.undrain(caller), _format(fmt, ("table", "json")))

    def drain_status(self, caller: Caller, fmt: str = "table") -> str:
        return _drain_text(self.service.drain_status(caller), _format(fmt, ("table", "json")))

    def cluster(self, caller: Caller, fmt: str = "table") -> str:
        fmt = _format(fmt, ("table", "json"))
        cluster = self.service.cluster(caller)
        if fmt == "json":
            return presentation.dumps(cluster)
        return presentation.cluster_text(cluster, time.time())

    def kill_channel(self, caller: Caller, channel: str, timeout: float | None = None) -> str:
        return self.service.kill_channel(caller, channel, timeout)

    def rm_channel(self, caller: Caller, channel: str, maybe_timeout: float | None = None) -> str:
        """The reference's ``rm_channel(channel, maybe_timeout)``: stop (killed after
        ``maybe_timeout`` seconds; None: the server's ``shutdown_timeout``) and forget."""
        return self.service.remove_channel(caller, channel, maybe_timeout)

    def block_while(self, caller: Caller, state: str, timeout: float | None = None, fmt: str = "table") -> str:
        fmt = _format(fmt, ("table", "json"))
        answer = self.service.block_while(caller, state, timeout)
        if fmt == "json":
            return presentation.dumps(answer)
        if not answer["timed_out"]:
            return f"no channel is {answer['state']}\n"
        return f"timed out after {answer['timeout']:g} s; still {answer['state']}: {', '.join(answer['channels'])}\n"

    def print_products(
        self, caller: Caller, fmt: str = "table", max_rows: int = 50, include_stopped: bool = False
    ) -> str:
        """The latest products of the active channels, each with its producing module;
        ``include_stopped``: of every configured channel (their stored products)."""
        fmt = _format(fmt, ("table", "json", "vertical"))
        latest = self.service.latest_products(caller, include_stopped)
        if fmt == "json":
            return presentation.dumps(presentation.latest_products_document(latest))
        return presentation.latest_products_text(latest, fmt, _max_rows(max_rows))

    def print_product(
        self,
        caller: Caller,
        product: str,
        columns: Any = None,
        query: str | None = None,
        types: bool = False,
        fmt: str | None = None,
        channel: str | None = None,
        max_rows: int | None = None,
    ) -> str:
        """The reference's ``print_product(product, columns, query, types, format)``: the
        product in every channel holding it, as the reference's text (format None/table,
        vertical, column-names, json, csv).  Ours after those: ``channel`` (only that one)
        and ``max_rows`` (the first rows of DataFrames)."""
        fmt = _reference_format(fmt)
        rows = _max_rows(max_rows)
        documents = self.service.product_everywhere(caller, product, columns, query, channel, types)
        if rows is not None:
            documents = [
                {**d, "value": d["value"].head(rows) if hasattr(d["value"], "head") else d["value"]} for d in documents
            ]
        return reference_format.product_text(product, documents, fmt)

    def get_product(
        self,
        caller: Caller,
        product: str,
        columns: Any = None,
        query: str | None = None,
        types: bool = False,
        fmt: str = "json",
        channel: str | None = None,
        max_rows: int | None = None,
    ) -> str:
        """One product as our clients want it: ``json`` (the document: channel, generation,
        product, value as records), plain ``csv``, or our ``table``/``vertical`` text; from
        the first channel holding it, or ``channel``."""
        fmt = _format(fmt, presentation.FORMATS)
        rows = _max_rows(max_rows)
        document = self.service.product(caller, product, columns, query, channel, types)
        return presentation.product_text(document, fmt, rows)

    def query_tool(
        self,
        caller: Caller,
        product: str,
        fmt: str | None = None,
        start_time: Any = None,
    ) -> str:
        """The reference ``de-query-tool``'s method: the product's history in every channel
        since ``start_time`` (text such as ``2021-03-21 11:00:00`` in the server's time zone,
        epoch seconds; None: all of it), as one table (format None/table, csv, json...)."""
        fmt = _reference_format(fmt)
        histories = self.service.product_histories(caller, product, start_time)
        return reference_format.history_text(product, histories, fmt)

    def product_dependencies(self, caller: Caller, fmt: str = "table") -> str:
        fmt = _format(fmt, ("table", "json"))
        graph = self.service.product_dependencies(caller)
        return presentation.dumps(graph) if fmt == "json" else presentation.dependencies_text(graph)

    def show_config(self, caller: Caller, channel: str = "all") -> str:
        return presentation.dumps(self.service.channel_configs(caller, channel)) + "\n"

    def show_de_config(self, caller: Caller) -> str:
        return presentation.dumps(self.service.server_config(caller)) + "\n"

    def reaper_start(self, caller: Caller, delay: float = 0) -> str:
        return self.service.reaper_start(caller, delay)

    def reaper_stop(self, caller: Caller) -> str:
        return self.service.reaper_stop(caller)

    def reaper_status(self, caller: Caller, fmt: str = "table") -> str:
        fmt = _format(fmt, ("table", "json"))
        status = self.service.reaper_status(caller)
        return presentation.dumps(status) if fmt == "json" else presentation.reaper_text(status)

    def get_log_level(self, caller: Caller) -> str:
        return self.service.log_level(caller)

    def set_log_level(self, caller: Caller, level: str) -> str:
        return self.service.set_log_level(caller, level)

    def get_source_log_level(self, caller: Caller, source: str, channel: str | None = None, fmt: str = "text") -> str:
        """The reference's ``get_source_log_level(source)``: the level of the lines a source
        emits while it runs, in every channel with a source of that name (or ``channel``):
        one level name when they agree, else a ``channel: LEVEL`` line per channel."""
        fmt = _format(fmt, ("text", "json"))
        levels = self.service.source_log_levels(caller, source, channel)
        if fmt == "json":
            return presentation.dumps(levels)
        if len(set(levels.values())) == 1:
            return next(iter(levels.values()))
        return "".join(f"{name}: {level}\n" for name, level in levels.items())

    def set_source_log_level(self, caller: Caller, source: str, level: str, channel: str | None = None) -> str:
        """The reference's ``set_source_log_level(source, level)``, in every channel with a
        source of that name (or ``channel``); NOTSET: the channel's level again."""
        levels = self.service.set_source_log_level(caller, source, level, channel)
        return "; ".join(f"source {source} of channel {name} log level is {lvl}" for name, lvl in levels.items())

    def queue_status(self, caller: Caller, fmt: str = "table") -> str:
        """The reference's ``queue_status``: what can wait between a channel's sources and
        its generations here (see ``ControlService.queue_status``)."""
        fmt = _format(fmt, ("table", "json"))
        rows = self.service.queue_status(caller)
        if fmt == "json":
            return presentation.dumps(rows)
        return presentation.queue_text(rows, time.time(), self.service.source_statuses(caller))

    def get_channel_log_level(self, caller: Caller, channel: str) -> str:
        return self.service.channel_log_level(caller, channel)

    def set_channel_log_level(self, caller: Caller, channel: str, level: str) -> str:
        return self.service.set_channel_log_level(caller, channel, level)

    def metrics(self, caller: Caller) -> str:
        return self.service.metrics(caller)[0].decode()

    def stop(self, caller: Caller) -> str:
        return self.service.stop_server(caller)

    def list_rpc_methods(self, caller: Caller) -> list[str]:
        self.service.ping(caller)  # the same access as any question
        return self.names()


class XmlRpcDispatcher:
    """Decodes a call, runs the method, encodes the answer."""

    def __init__(self, methods: XmlRpcMethods) -> None:
        self.methods = methods
        self.names = set(methods.names())
        self.logger = get_logger().bind(module="xmlrpc")

    def handle(self, body: bytes, caller: Caller) -> bytes:
        try:
            params, name = xmlrpc.client.loads(body, use_builtin_types=True)
        except Exception as exc:
            return _fault(PARSE_ERROR, f"malformed XML-RPC request: {exc}")
        if name == "system.listMethods":
            name = "list_rpc_methods"
        if name not in self.names:
            return _fault(METHOD_NOT_FOUND, f"no method {name!r}; methods are {', '.join(sorted(self.names))}")
        method = getattr(self.methods, name)
        try:
            bound = inspect.signature(method).bind(caller, *params)
        except TypeError as exc:
            return _fault(INVALID_PARAMS, f"{name}: {exc}")
        try:
            check_argument_types(name, method, bound)
        except InvalidArgument as exc:
            return _fault(INVALID_PARAMS, f"{name}: {exc.message}")
        try:
            result = method(caller, *params)
        except ServiceError as exc:
            self.logger.warning("rpc method refused", method=name, reason=exc.message)
            return _fault(FAULT_CODES.get(exc.kind, SERVER_ERROR), f"{name}: {exc.message}")
        except Exception as exc:
            self.logger.warning("rpc method failed", method=name, error=f"{type(exc).__name__}: {exc}")
            return _fault(SERVER_ERROR, f"{name}: {exc}")
        try:
            return xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True).encode()
        except Exception as exc:  # e.g. an integer beyond XML-RPC's 32 bits
            return _fault(SERVER_ERROR, f"{name}: the answer cannot be sent over XML-RPC: {exc}")


def _drain_text(answer: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return presentation.dumps(answer)
    return presentation.drain_text(answer)
