"""The server's one HTTP endpoint (CherryPy).

* ``/RPC2`` and POST ``/``: XML-RPC (:mod:`.xmlrpc`);
* ``/metrics``: Prometheus;
* ``/api/v1/...``: the JSON API and its event stream (:mod:`.api`);
* GET ``/`` and ``/static/...``: the dashboard, shipped inside the package.

Every route asks the one :class:`~.service.ControlService`; this module only moves bytes.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import cherrypy

from decisionengine.framework.web.api import Api, ApiError, check_body_size
from decisionengine.framework.web.service import ControlService
from decisionengine.framework.web.xmlrpc import XmlRpcDispatcher, XmlRpcMethods

DASHBOARD = pathlib.Path(__file__).resolve().parent / "dashboard"
DEFAULT_ADDRESS = ("localhost", 8888)


def listening_address(global_config: dict[str, Any]) -> tuple[str, int]:
    host, port = global_config.get("server_address") or DEFAULT_ADDRESS
    return str(host), int(port)


def raw_body() -> bytes:
    """The request body as sent (request body processing is off for this application)."""
    try:
        length = check_body_size()
    except ApiError as exc:
        raise cherrypy.HTTPError(exc.status, str(exc)) from None
    return cherrypy.request.rfile.read(length) if length else b""


def _limit_body() -> None:
    """Refuse a declared body over the limit before anything else (dispatch included).

    Any other early error would leave the HTTP server reading the unread body before it
    answers; a 413 makes it close the connection instead.
    """
    try:
        check_body_size()
    except ApiError as exc:
        raise cherrypy.HTTPError(exc.status, str(exc)) from None


def json_error_page(status: str, message: str, traceback: str, version: str) -> str:
    """CherryPy's own errors under /api (an unknown version, a body too large...) as JSON too."""
    cherrypy.response.headers["Content-Type"] = "application/json"
    return json.dumps({"error": f"{status}: {message}"})


class _ApiRoot:
    """``/api``: holds the versions."""

    def __init__(self, service: ControlService) -> None:
        self.v1 = Api(service)

    @cherrypy.expose
    def index(self) -> bytes:
        raise cherrypy.HTTPRedirect("/api/v1/")


class Root:
    """``/``: XML-RPC on POST (the reference clients post to ``/``), the dashboard on GET."""

    def __init__(self, service: ControlService) -> None:
        self.service = service
        self.rpc = XmlRpcDispatcher(XmlRpcMethods(service))
        self.api = _ApiRoot(service)

    def _xmlrpc(self) -> bytes:
        if cherrypy.request.method != "POST":
            cherrypy.response.headers["Allow"] = "POST"
            raise cherrypy.HTTPError(405, "XML-RPC calls are POST requests")
        cherrypy.response.headers["Content-Type"] = "text/xml"
        return self.rpc.handle(raw_body(), self.service.identify("xmlrpc"))

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
        body, content_type = self.service.metrics(self.service.identify("metrics"))
        cherrypy.response.headers["Content-Type"] = content_type
        return body


class HttpServer:
    """CherryPy, configured for a daemon: our signals, our logging, no autoreload."""

    def __init__(self, service: ControlService) -> None:
        self.service = service
        config = service.engine.global_config
        webserver = config.get("webserver", {}) or {}
        self.address = listening_address(config)
        # Each open event stream (a dashboard, de-client --follow) holds one thread.
        self.threads = int(webserver.get("thread_pool", 30))
        self.root = Root(service)
        self.started = False

    def start(self) -> None:
        cherrypy.config.update(
            {
                "environment": "production",
                "server.socket_host": self.address[0],
                "server.socket_port": self.address[1],
                "server.thread_pool": self.threads,
                # No limit in the HTTP server: it would answer in plain text; every route
                # checks the size itself (check_body_size) and answers in its own shape.
                "server.max_request_body_size": 0,
                "log.screen": False,
                "log.access_file": "",
                "log.error_file": "",
                "engine.autoreload.on": False,
                "checker.on": False,
                "request.show_tracebacks": False,
            }
        )
        # Bodies are read raw by the handlers: an XML-RPC call is never parsed as a form.
        cherrypy.tools.de_body_limit = cherrypy.Tool("on_start_resource", _limit_body, priority=10)
        cherrypy.tree.mount(
            self.root,
            "/",
            {
                "/": {
                    "request.dispatch": cherrypy.dispatch.Dispatcher(),
                    "request.process_request_body": False,
                    "tools.de_body_limit.on": True,
                },
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
