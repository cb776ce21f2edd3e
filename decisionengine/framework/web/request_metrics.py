"""Prometheus metrics of the HTTP endpoint: requests by interface and status, and their time.

``de_http_requests_total{interface,code}`` and
``de_http_request_duration_seconds{interface}`` (a histogram), with ``interface`` one of
``xmlrpc``, ``api``, ``events`` (the Server-Sent Events stream: its "duration" is how long a
client followed, kept apart so that it does not swamp the API's latency), ``metrics`` and
``dashboard``.  Few label values on purpose: paths and channel names would make a series per
client-chosen string.
"""

from __future__ import annotations

import time

import cherrypy

from decisionengine.framework.util.metrics import Counter, Histogram

REQUESTS = Counter("http_requests", "HTTP requests answered, by interface and status code", ["interface", "code"])
SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by interface",
    ["interface"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def interface_of(path: str, method: str) -> str:
    if path == "/RPC2" or (path in ("", "/") and method == "POST"):
        return "xmlrpc"
    if path.startswith("/api"):
        return "events" if path.rstrip("/").endswith("/events") else "api"
    if path == "/metrics":
        return "metrics"
    return "dashboard"


def request_started() -> None:
    cherrypy.request.de_started = time.monotonic()


def request_ended() -> None:
    request = cherrypy.request
    started = getattr(request, "de_started", None)
    interface = interface_of(request.path_info, request.method)
    code = str(cherrypy.response.status or "500").split(" ", 1)[0]
    REQUESTS.labels(interface, code).inc()
    if started is not None:
        SECONDS.labels(interface).observe(time.monotonic() - started)


def install() -> dict[str, bool]:
    """Register the tools; the config entries that turn them on for an application."""
    cherrypy.tools.de_request_started = cherrypy.Tool("on_start_resource", request_started, priority=1)
    cherrypy.tools.de_request_ended = cherrypy.Tool("on_end_request", request_ended)
    return {"tools.de_request_started.on": True, "tools.de_request_ended.on": True}
