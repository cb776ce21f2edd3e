"""The server's one HTTP endpoint (CherryPy).

* ``/RPC2`` and POST ``/``: XML-RPC;
* ``/metrics``: Prometheus;
* ``/api/v1/...``: the JSON API and its event stream (:mod:`.api`);
* GET ``/`` and ``/static/...``: the dashboard, shipped inside the package.

XML-RPC is decoded and encoded with the standard library (``xmlrpc.client.loads`` /
``dumps``) and dispatched to the server's ``rpc_*`` methods.  A malformed request, an
unknown method, wrong arguments and an error raised by a method each come back as an
XML-RPC fault with a clear message, never as a stack trace.
"""

from __future__ import annotations

import inspect
import json
import pathlib
import socket
import xmlrpc.client
from collections.abc import Callable, Mapping
from typing import Any

import cherrypy
import structlog

from decisionengine.framework.engine import server_metrics
from decisionengine.framework.engine.api import Api

PARSE_ERROR = -32700
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
SERVER_ERROR = 1


def _fault(code: int, message: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True, allow_none=True).encode()


MAX_BODY = 10 * 1024 * 1024


def raw_body() -> bytes:
    """The request body as sent (request body processing is off for this application)."""
    try:
        length = int(cherrypy.request.headers.get("Content-Length") or 0)
    except ValueError:
        raise cherrypy.HTTPError(400, "invalid Content-Length") from None
    if length > MAX_BODY:
        raise cherrypy.HTTPError(413, f"request body larger than {MAX_BODY} bytes")
    return cherrypy.request.rfile.read(length) if length else b""


class XmlRpc:
    """Decodes a call, runs the method, encodes the answer."""

    def __init__(self, methods: Mapping[str, Callable[..., Any]]) -> None:
        self.methods = dict(methods)
        self.logger = structlog.get_logger("decisionengine").bind(module="rpc")

    def handle(self, body: bytes) -> bytes:
        try:
            params, name = xmlrpc.client.loads(body, use_builtin_types=True)
        except Exception as exc:
            return _fault(PARSE_ERROR, f"malformed XML-RPC request: {exc}")
        if name in ("system.listMethods", "list_rpc_methods"):
            return xmlrpc.client.dumps((sorted(self.methods),), methodresponse=True).encode()
        method = self.methods.get(name or "")
        if method is None:
            return _fault(METHOD_NOT_FOUND, f"no method {name!r}; methods are {', '.join(sorted(self.methods))}")
        try:
            inspect.signature(method).bind(*params)
        except TypeError as exc:
            return _fault(INVALID_PARAMS, f"{name}: {exc}")
        try:
            result = method(*params)
        except Exception as exc:
            self.logger.warning("rpc method failed", method=name, error=f"{type(exc).__name__}: {exc}")
            return _fault(SERVER_ERROR, f"{name}: {exc}")
        try:
            return xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True).encode()
        except Exception as exc:  # e.g. an integer beyond XML-RPC's 32 bits
            return _fault(SERVER_ERROR, f"{name}: the answer cannot be sent over XML-RPC: {exc}")


DASHBOARD = pathlib.Path(__file__).resolve().parent / "dashboard"


class _ApiRoot:
    """``/api``: holds the versions."""

    def __init__(self, engine: Any) -> None:
        self.v1 = Api(engine)


def json_error_page(status: str, message: str, traceback: str, version: str) -> str:
    """CherryPy's own errors under /api (an unknown version, a body too large...) as JSON too."""
    cherrypy.response.headers["Content-Type"] = "application/json"
    return json.dumps({"error": f"{status}: {message}"})


class Root:
    """``/``: XML-RPC on POST (the reference clients post to ``/``), the dashboard on GET."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.rpc = XmlRpc(engine.rpc_methods())
        self.api = _ApiRoot(engine)

    def _xmlrpc(self) -> bytes:
        if cherrypy.request.method != "POST":
            cherrypy.response.headers["Allow"] = "POST"
            raise cherrypy.HTTPError(405, "XML-RPC calls are POST requests")
        cherrypy.response.headers["Content-Type"] = "text/xml"
        return self.rpc.handle(raw_body())

    @cherrypy.expose
    def index(self) -> bytes:
        if cherrypy.request.method == "POST":
            return self._xmlrpc()
        cherrypy.response.headers["Content-Type"] = "text/html; charset=utf-8"
        return (DASHBOARD / "index.html").read_bytes()

    @cherrypy.expose
    def RPC2(self) -> bytes:
        return self._xmlrpc()

    @cherrypy.expose
    def metrics(self) -> bytes:
        body, content_type = server_metrics.render(self.engine.reaper)
        cherrypy.response.headers["Content-Type"] = content_type
        return body


class HttpServer:
    """CherryPy, configured for a daemon: our signals, our logging, no autoreload."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        host, port = engine.global_config.get("server_address", ["localhost", 8888])
        webserver = engine.global_config.get("webserver", {}) or {}
        self.address = (host, int(port))
        # Each open event stream (a dashboard, de-client --follow) holds one thread.
        self.threads = int(webserver.get("thread_pool", 30))
        self.root = Root(engine)
        self.started = False

    def check_address(self) -> None:
        """Fail with a clear message if the address cannot be listened on.

        CherryPy ends the whole process (exit status 70) when its server cannot bind, so
        the server checks first, before it starts any channel.
        """
        try:
            infos = socket.getaddrinfo(self.address[0], self.address[1], type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise RuntimeError(f"server_address {self.address[0]!r} does not resolve: {exc}") from None
        family, kind, proto, _, where = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as exc:
                raise RuntimeError(
                    f"cannot listen on {self.address[0]}:{self.address[1]}: {exc.strerror} "
                    "(is another de-server running? set server_address or --port)"
                ) from None

    def start(self) -> None:
        cherrypy.config.update(
            {
                "environment": "production",
                "server.socket_host": self.address[0],
                "server.socket_port": self.address[1],
                "server.thread_pool": self.threads,
                "server.max_request_body_size": MAX_BODY,
                "log.screen": False,
                "log.access_file": "",
                "log.error_file": "",
                "engine.autoreload.on": False,
                "checker.on": False,
                "request.show_tracebacks": False,
            }
        )
        # Bodies are read raw by the handlers: an XML-RPC call is never parsed as a form.
        cherrypy.tree.mount(
            self.root,
            "/",
            {
                "/": {"request.dispatch": cherrypy.dispatch.Dispatcher(), "request.process_request_body": False},
                "/api": {"error_page.default": json_error_page},
                "/static": {"tools.staticdir.on": True, "tools.staticdir.dir": str(DASHBOARD)},
            },
        )
        if hasattr(cherrypy.engine, "signal_handler"):
            cherrypy.engine.signal_handler.unsubscribe()
        cherrypy.engine.start()
        cherrypy.engine.wait(cherrypy.engine.states.STARTED)
        self.started = True
        bound = cherrypy.server.bound_addr
        if bound:
            self.address = (self.address[0], bound[1])

    def stop(self) -> None:
        if self.started:
            cherrypy.engine.exit()
            self.started = False
