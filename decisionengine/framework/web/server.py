"""The server's one HTTP endpoint (CherryPy).

* ``/RPC2`` and POST ``/``: XML-RPC (:mod:`.xmlrpc`);
* ``/metrics``: Prometheus;
* ``/api/v1/...``: the JSON API and its event stream (:mod:`.api`);
* GET ``/`` and ``/static/...``: the dashboard, shipped inside the package.

Every route asks the one :class:`~.service.ControlService`; this module only moves bytes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import pathlib
from typing import Any

import cherrypy

from decisionengine.framework.util.logger import get_logger
from decisionengine.framework.web import request_metrics
from decisionengine.framework.web.access import RequestInfo, is_local_address
from decisionengine.framework.web.api import STATUS_OF, Api, ApiError, check_body_size
from decisionengine.framework.web.service import Caller, ControlService, ServiceError
from decisionengine.framework.web.xmlrpc import XmlRpcDispatcher, XmlRpcMethods

UNIX_PREFIX = "unix:"

DASHBOARD = pathlib.Path(__file__).resolve().parent / "dashboard"
DEFAULT_ADDRESS = ("localhost", 8888)
#: seconds cheroot's idle connection loop sleeps in select(): the longest a stop waits for it
SELECT_INTERVAL = 0.05


def listening_address(global_config: dict[str, Any]) -> tuple[str, int] | str:
    """(host, port), or the path of a Unix socket (``server_address: 'unix:/path'``)."""
    address = global_config.get("server_address") or DEFAULT_ADDRESS
    if isinstance(address, str):
        return address.removeprefix(UNIX_PREFIX)
    host, port = address
    return str(host), int(port)


def presented_token() -> str | None:
    """The token a request carries: ``Authorization: Bearer <token>``, or the password of
    HTTP Basic authentication (XML-RPC clients send it from ``http://user:TOKEN@host/``)."""
    header = cherrypy.request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if not value:
        return None
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "\x00invalid"  # a token that matches nothing: refused as a wrong token
        return decoded.partition(":")[2] or None
    return "\x00invalid"


def transport_of(path: str, method: str) -> str:
    if path == "/RPC2" or (path in ("", "/") and method == "POST"):
        return "xmlrpc"
    if path.startswith("/api"):
        return "api"
    if path == "/metrics":
        return "metrics"
    return "dashboard"


def _admit(service: ControlService) -> None:
    """Every request: who it is (Host, cross-site markers, token); refused here if it must be."""
    request = cherrypy.request
    info = RequestInfo(
        transport=transport_of(request.path_info, request.method),
        method=request.method,
        token=presented_token(),
        local=is_local_address(getattr(request.remote, "ip", None)),
        host=request.headers.get("Host"),
        origin=request.headers.get("Origin"),
        fetch_site=request.headers.get("Sec-Fetch-Site"),
        content_type=request.headers.get("Content-Type"),
    )
    try:
        request.de_caller = service.admit(info)
    except ServiceError as exc:
        raise cherrypy.HTTPError(STATUS_OF.get(exc.kind, 403), exc.message) from None


def caller() -> Caller:
    return cherrypy.request.de_caller


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
        return self.rpc.handle(raw_body(), caller())

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
        try:
            body, content_type = self.service.metrics(caller())
        except ServiceError as exc:
            raise cherrypy.HTTPError(STATUS_OF.get(exc.kind, 403), exc.message) from None
        cherrypy.response.headers["Content-Type"] = content_type
        return body


class HttpServer:
    """CherryPy, configured for a daemon: our signals, our logging, no autoreload; TCP (with
    TLS when configured) or a Unix socket whose file mode decides who may connect."""

    def __init__(self, service: ControlService) -> None:
        self.service = service
        config = service.engine.global_config
        self.webserver = config.get("webserver", {}) or {}
        self.address = listening_address(config)
        # Each open event stream (a dashboard, de-client --follow) holds one thread.
        self.threads = int(self.webserver.get("thread_pool", 30))
        self.root = Root(service)
        self.started = False
        self.logger = get_logger().bind(module="web")

    @property
    def tls(self) -> bool:
        return bool(self.webserver.get("ssl_certificate"))

    @property
    def url(self) -> str:
        """Where clients reach the server (what de-client --url takes)."""
        if isinstance(self.address, str):
            return f"{UNIX_PREFIX}{self.address}"
        host, port = self.address
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def _listen_settings(self) -> dict[str, Any]:
        if isinstance(self.address, str):
            return {"server.socket_file": self.address, "server.socket_host": None}
        settings: dict[str, Any] = {"server.socket_host": self.address[0], "server.socket_port": self.address[1]}
        if self.tls:
            settings |= {
                "server.ssl_module": "builtin",
                "server.ssl_certificate": self.webserver["ssl_certificate"],
                "server.ssl_private_key": self.webserver["ssl_private_key"],
            }
        return settings

    def start(self) -> None:
        cherrypy.config.update(
            {
                "environment": "production",
                **self._listen_settings(),
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
        cherrypy.tools.de_admit = cherrypy.Tool("on_start_resource", _admit, priority=20)
        measured = request_metrics.install()
        cherrypy.tree.mount(
            self.root,
            "/",
            {
                "/": {
                    "request.dispatch": cherrypy.dispatch.Dispatcher(),
                    "request.process_request_body": False,
                    "tools.de_body_limit.on": True,
                    "tools.de_admit.on": True,
                    "tools.de_admit.service": self.service,
                    **measured,
                },
                "/api": {"error_page.default": json_error_page},
                "/static": {"tools.staticdir.on": True, "tools.staticdir.dir": str(DASHBOARD)},
            },
        )
        if hasattr(cherrypy.engine, "signal_handler"):
            cherrypy.engine.signal_handler.unsubscribe()
        if not cherrypy.server.httpserver:  # what cherrypy.server.start() would make, made now to tune it
            cherrypy.server.httpserver, cherrypy.server.bind_addr = cherrypy.server.httpserver_from_self()
        # cheroot's connection loop waits in select() this long when idle, and stopping waits
        # for that loop: half a second by default, paid at every stop of de-server
        cherrypy.server.httpserver.expiration_interval = SELECT_INTERVAL
        if isinstance(self.address, str):
            # The socket takes the mode at creation: nobody outside the mode connects, not even briefly.
            mode = int(self.webserver.get("socket_mode", "0660"), 8)
            previous = os.umask(0o777 & ~mode)
            try:
                cherrypy.engine.start()
                cherrypy.engine.wait(cherrypy.engine.states.STARTED)
            finally:
                os.umask(previous)
            os.chmod(self.address, mode)
        else:
            cherrypy.engine.start()
            cherrypy.engine.wait(cherrypy.engine.states.STARTED)
        self.started = True
        if not isinstance(self.address, str):
            bound = cherrypy.server.bound_addr
            if bound:
                self.address = (self.address[0], bound[1])
        if self.service.control_open_to_local_users:
            self.logger.warning(
                "no webserver.api_token: control over XML-RPC is open to every user of this host "
                "(set api_token or api_token_file to require a token)",
                address=self.url,
            )

    def stop(self) -> None:
        if self.started:
            cherrypy.engine.exit()
            self.started = False
            if isinstance(self.address, str):
                with contextlib.suppress(OSError):
                    os.unlink(self.address)
