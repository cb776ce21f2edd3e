"""XML-RPC: the reference server's methods, answered by the control service.

:class:`XmlRpcMethods` lists every method a client may call, with the reference names and
positional arguments; each one asks :class:`~.service.ControlService` and renders the
answer as the reference does (text tables, or JSON text with ``format="json"``).  The
method table is the allow-list: a name not defined here is an unknown method.

:class:`XmlRpcDispatcher` decodes a call with the standard library, checks its arguments
against the method's signature, runs it and encodes the answer.  A malformed request, an
unknown method, wrong arguments and a refused request each come back as a fault with a
clear message, never as a stack trace.
"""

from __future__ import annotations

import inspect
import time
import xmlrpc.client
from typing import Any

from decisionengine.framework.util.logger import get_logger
from decisionengine.framework.web import presentation
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


def _format(fmt: Any, allowed: tuple[str, ...]) -> str:
    try:
        return presentation.check_format(fmt if isinstance(fmt, str) else "", allowed)
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

    def kill_channel(self, caller: Caller, channel: str, timeout: float | None = None) -> str:
        return self.service.kill_channel(caller, channel, timeout)

    def rm_channel(self, caller: Caller, channel: str) -> str:
        return self.service.remove_channel(caller, channel)

    def block_while(self, caller: Caller, state: str, timeout: float | None = None, fmt: str = "table") -> str:
        fmt = _format(fmt, ("table", "json"))
        answer = self.service.block_while(caller, state, timeout)
        if fmt == "json":
            return presentation.dumps(answer)
        if not answer["timed_out"]:
            return f"no channel is {answer['state']}\n"
        return f"timed out after {answer['timeout']:g} s; still {answer['state']}: {', '.join(answer['channels'])}\n"

    def print_products(self, caller: Caller, fmt: str = "table", max_rows: int = 50) -> str:
        fmt = _format(fmt, ("table", "json", "vertical"))
        latest = self.service.latest_of_all(caller)
        if fmt == "json":
            return presentation.dumps(presentation.latest_products_document(latest))
        return presentation.latest_products_text(latest, fmt, _max_rows(max_rows))

    def print_product(
        self,
        caller: Caller,
        product: str,
        columns: Any = None,
        query: str | None = None,
        fmt: str = "table",
        channel: str | None = None,
        max_rows: int | None = None,
    ) -> str:
        fmt = _format(fmt, presentation.FORMATS)
        rows = _max_rows(max_rows)
        document = self.service.product(caller, product, columns, query, channel)
        return presentation.product_text(document, fmt, rows)

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
            inspect.signature(method).bind(caller, *params)
        except TypeError as exc:
            return _fault(INVALID_PARAMS, f"{name}: {exc}")
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
