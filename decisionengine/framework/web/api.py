"""The JSON HTTP API under ``/api/v1`` (read-only unless ``webserver.api_token`` is set).

Routes (the OpenAPI document at ``/api/v1/openapi.json`` describes each answer):

====  ============================================  =========================================
GET   /channels                                     every channel, with ``failing``
GET   /channels/{name}                              one channel's status and recent history
GET   /channels/{name}/graph                        modules (nodes) and products (edges)
GET   /channels/{name}/products                     the latest data block: names, types, shapes
GET   /channels/{name}/products/{key}               a value; DataFrames paged (offset, limit, columns)
GET   /channels/{name}/products/{key}/history       a number per generation (since, column, agg)
GET   /channels/{name}/decisions                    facts and publishers per generation
GET   /sources                                      every source, its consumers and state (shared sources)
GET   /reaper                                       the Reaper's status
POST  /channels/{name}/start, /channels/{name}/stop start or stop a channel (token)
POST  /reaper/start, /reaper/stop                   the Reaper (token)
GET   /events                                       Server-Sent Events (generation, state)
GET   /openapi.json                                 this API, as OpenAPI 3.1
GET   /                                             an index: the document, the dashboard, every path
====  ============================================  =========================================

Errors are ``{"error": message}`` with 400 (bad parameter), 401 (token missing or wrong),
403 (the API is read-only: no token configured), 404 (unknown channel, product or path),
405 (wrong method), 409 (not available yet), never a stack trace.
"""

from __future__ import annotations

import collections
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cherrypy
import pandas as pd

from decisionengine import __version__
from decisionengine.framework.dataspace.errors import DataSpaceError
from decisionengine.framework.util.logger import get_logger
from decisionengine.framework.util.times import parse_time
from decisionengine.framework.web import openapi, presentation, sse
from decisionengine.framework.web.service import Caller, ControlService, ServiceError

#: the largest request body the server accepts (the JSON API takes none; XML-RPC calls do)
MAX_BODY = 10 * 1024 * 1024
DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000
AGGREGATES: dict[str, Callable[[pd.Series], Any]] = {
    "sum": lambda s: s.sum(),
    "mean": lambda s: s.mean(),
    "min": lambda s: s.min(),
    "max": lambda s: s.max(),
    "last": lambda s: s.iloc[-1] if len(s) else None,
}
KEEPALIVE_SECONDS = 15.0


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


#: HTTP status of each kind of refusal of the control service
STATUS_OF = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "unsupported": 415,
    "unavailable": 503,
}


def _json(value: Any) -> bytes:
    return json.dumps(presentation.to_jsonable(value), separators=(",", ":")).encode()


class _PageCache:
    """Recently served product pages.  Keyed by generation, so a new commit is never stale."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._entries: collections.OrderedDict[tuple, bytes] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            body = self._entries.get(key)
            if body is not None:
                self._entries.move_to_end(key)
            return body

    def put(self, key: tuple, body: bytes) -> None:
        with self._lock:
            self._entries[key] = body
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


def check_body_size() -> int:
    """The request's declared body size; 413 above :data:`MAX_BODY`, 400 when unreadable.

    The HTTP server itself is given no limit, so that an oversized request is refused here,
    in the answer shape of its route (JSON under /api, a fault... ) rather than as plain text.
    """
    raw = cherrypy.request.headers.get("Content-Length") or "0"
    try:
        length = int(raw)
    except ValueError:
        raise ApiError(400, f"invalid Content-Length {raw!r}") from None
    if length < 0:
        raise ApiError(400, f"invalid Content-Length {raw!r}")
    if length > MAX_BODY:
        raise ApiError(413, f"request body too large: {length} bytes, at most {MAX_BODY}")
    return length


class Api:
    """Mounted at ``/api/v1``; every path below goes through :meth:`default`."""

    def __init__(self, service: ControlService) -> None:
        self.service = service
        self.logger = get_logger().bind(module="api")
        self.cache = _PageCache()

    # -- plumbing ----------------------------------------------------------------------------

    @cherrypy.expose
    def default(self, *path: str, **params: Any) -> bytes:
        cherrypy.response.headers["Content-Type"] = "application/json"
        cherrypy.response.headers["Cache-Control"] = "no-store"
        try:
            check_body_size()
            return self._route(cherrypy.request.de_caller, cherrypy.request.method, list(path), params)
        except (ApiError, ServiceError) as exc:
            status = exc.status if isinstance(exc, ApiError) else STATUS_OF.get(exc.kind, 400)
            cherrypy.response.status = status
            if status == 401:
                cherrypy.response.headers["WWW-Authenticate"] = 'Bearer realm="decisionengine"'
            return _json({"error": str(exc)})
        except DataSpaceError as exc:  # stored data that cannot be read (refused payload...): say which
            self.logger.error("API request failed on stored data", path="/".join(path), error=str(exc))
            cherrypy.response.status = 500
            return _json({"error": str(exc)})
        except Exception as exc:
            self.logger.exception("API request failed", path="/".join(path))
            cherrypy.response.status = 500
            return _json({"error": f"internal error ({type(exc).__name__})"})

    def _route(self, caller: Caller, method: str, path: list[str], params: dict[str, Any]) -> bytes:
        service = self.service
        match path:
            case []:
                self._only(method, "GET")
                return _json(self._index())
            case ["openapi.json"]:
                self._only(method, "GET")
                return _json(openapi.document())
            case ["channels"]:
                self._only(method, "GET")
                return _json({"channels": [_summary(s) for s in service.channel_statuses(caller)]})
            case ["channels", name]:
                self._only(method, "GET")
                return _json(_channel(service.channel_status(caller, name)))
            case ["channels", name, "graph"]:
                self._only(method, "GET")
                return _json(_graph(name, service.channel_plan(caller, name)))
            case ["channels", name, "products"]:
                self._only(method, "GET")
                return _json(self._products(caller, name))
            case ["channels", name, "products", key]:
                self._only(method, "GET")
                return self._product(caller, name, key, params)
            case ["channels", name, "products", key, "history"]:
                self._only(method, "GET")
                return _json(self._history(caller, name, key, params))
            case ["channels", name, "decisions"]:
                self._only(method, "GET")
                limit = int(_number(params, "limit", 20, minimum=1, maximum=10_000, integer=True))
                since = _time(params, "since", 0.0)
                decisions = service.decisions(caller, name, since, limit)
                for entry in decisions:
                    entry["actions"] = [
                        p["publisher"] for p in presentation.to_jsonable(entry["publishers"]) if p.get("ran")
                    ]
                return _json({"channel": name, "decisions": decisions})
            case ["channels", name, ("start" | "stop") as action]:
                self._only(method, "POST")
                control = service.start_channel if action == "start" else service.stop_channel
                result = control(caller, name)
                self.logger.info("channel controlled through the API", channel=name, action=action)
                return _json({"result": result, "channel": _summary(service.channel_status(caller, name))})
            case ["cluster"]:
                self._only(method, "GET")
                return _json(self._cluster(caller))
            case ["cluster", ("drain" | "undrain") as action]:
                self._only(method, "POST")
                (service.drain if action == "drain" else service.undrain)(caller)
                self.logger.warning("cluster drain changed through the API", action=action)
                return _json(self._cluster(caller))
            case ["sources"]:
                self._only(method, "GET")
                return _json({"sources": service.source_statuses(caller)})
            case ["reaper"]:
                self._only(method, "GET")
                return _json(service.reaper_status(caller))
            case ["reaper", ("start" | "stop") as action]:
                self._only(method, "POST")
                if action == "start":
                    result = service.reaper_start(caller, params.get("delay"))
                else:
                    result = service.reaper_stop(caller)
                return _json({"result": result, "reaper": service.reaper_status(caller)})
        raise ApiError(404, f"no such API path: /api/v1/{'/'.join(path)}; the index is /api/v1/")

    def _cluster(self, caller: Caller) -> dict[str, Any]:
        cluster = self.service.cluster(caller)
        if cluster is None:
            raise ApiError(409, "this server's data source cannot share channels with other servers")
        return {**cluster, "drain": self.service.drain_status(caller)}

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            cherrypy.response.headers["Allow"] = allowed
            raise ApiError(405, f"use {allowed} here, not {method}")

    @staticmethod
    def _index() -> dict[str, Any]:
        """Where things are: the document, the dashboard, and every resource."""
        base = "/api/v1"
        return {
            "name": "decisionengine JSON API",
            "version": __version__,
            "openapi": f"{base}/openapi.json",
            "dashboard": "/",
            "events": f"{base}/events",
            "resources": [
                {"path": f"{base}{path}", "methods": sorted(m.upper() for m in methods)}
                for path, methods in openapi.document()["paths"].items()
            ],
        }

    # -- products ---------------------------------------------------------------------------------

    def _products(self, caller: Caller, name: str) -> dict[str, Any]:
        latest = self.service.latest(caller, name)
        if latest is None:
            return {"channel": name, "generation": None, "products": []}
        return {
            "channel": name,
            "generation": latest.generation_id,
            "products": [{"name": key, **presentation.describe_value(v)} for key, v in latest.products.items()],
        }

    def _product(self, caller: Caller, name: str, key: str, params: dict[str, Any]) -> bytes:
        offset = int(_number(params, "offset", 0, minimum=0, integer=True))
        limit = int(_number(params, "limit", DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT, integer=True))
        columns = _columns(params)
        generation = self.service.known_generation(caller, name)
        if generation is None:
            raise ApiError(404, f"channel {name!r} has no generation yet")
        cached = self.cache.get((name, generation, key, offset, limit, tuple(columns or ())))
        if cached is not None:
            return cached
        latest = self.service.latest_holding(caller, name, key)
        if latest is None or key not in latest.products:
            number = latest.generation_id if latest is not None else generation
            raise ApiError(404, f"no product {key!r} in generation {number} of channel {name!r}")
        value = latest.products[key]
        document: dict[str, Any] = {
            "channel": name,
            "generation": latest.generation_id,
            "product": key,
            "type": type(value).__name__,
        }
        if isinstance(value, pd.DataFrame):
            if columns is not None:
                unknown = [c for c in columns if c not in value.columns]
                if unknown:
                    raise ApiError(400, f"unknown columns {unknown}; columns are {[str(c) for c in value.columns]}")
                value = value[columns]
            page = value.iloc[offset : offset + limit]
            body = (
                _json(
                    {
                        **document,
                        "total_rows": len(value),
                        "offset": offset,
                        "limit": limit,
                        "columns": [str(c) for c in value.columns],
                    }
                )[:-1]
                + b',"rows":'
                + page.to_json(orient="records", date_format="iso", default_handler=str).encode()
                + b"}"
            )
        else:
            if columns is not None:
                raise ApiError(400, "columns applies to DataFrame products")
            body = _json({**document, "value": value})
        self.cache.put((name, latest.generation_id, key, offset, limit, tuple(columns or ())), body)
        return body

    def _history(self, caller: Caller, name: str, key: str, params: dict[str, Any]) -> dict[str, Any]:
        since = _time(params, "since", time.time() - 86400)
        column = params.get("column") or None
        agg = params.get("agg") or "sum"
        if agg not in AGGREGATES:
            raise ApiError(400, f"agg must be one of {', '.join(AGGREGATES)}, not {agg!r}")
        points = [
            {
                "generation_id": item["generation_id"],
                "generation_time": item["generation_time"],
                "value": _point(item["value"], column, agg),
            }
            for item in self.service.history(caller, name, key, since)
        ]
        if not points:
            latest = self.service.latest(caller, name, [key])
            if latest is not None and key not in latest.products:
                raise ApiError(404, f"no product {key!r} in channel {name!r}")
        measure = f"{agg}({column})" if column else "rows"
        return {"channel": name, "product": key, "since": since, "measure": measure, "points": points}

    # -- live events ------------------------------------------------------------------------------

    @cherrypy.expose
    @cherrypy.config(**{"response.stream": True})
    def events(self, channel: str | None = None, **_: Any) -> Iterator[bytes]:
        if cherrypy.request.method != "GET":
            cherrypy.response.status = 405
            cherrypy.response.headers["Allow"] = "GET"
            cherrypy.response.headers["Content-Type"] = "application/json"
            return iter([_json({"error": "use GET here"})])
        try:
            subscription = self.service.subscribe(cherrypy.request.de_caller, channel)
        except ServiceError as exc:
            cherrypy.response.status = STATUS_OF.get(exc.kind, 400)
            cherrypy.response.headers["Content-Type"] = "application/json"
            return iter([_json({"error": str(exc)})])
        cherrypy.response.headers["Content-Type"] = "text/event-stream"
        cherrypy.response.headers["Cache-Control"] = "no-cache"
        cherrypy.response.headers["X-Accel-Buffering"] = "no"
        return sse.stream(subscription.events(KEEPALIVE_SECONDS))


# -- answers ---------------------------------------------------------------------------------


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    last = status.get("last_generation") or None
    sources = {
        key: {
            "last_update": source.get("last_update"),
            "deliveries": source.get("deliveries", 0),
            "missed_update_count": source.get("missed_update_count", 0),
            "last_error": source.get("last_error"),
        }
        for key, source in (status.get("sources") or {}).items()
    }
    failing_sources = dict(status.get("failing_sources") or {})
    failing = (
        status.get("state") == "ERROR"
        or bool(last and last.get("outcome") in ("failed", "publish_failed"))
        or any(s["missed_update_count"] for s in sources.values())
        or bool(failing_sources)
    )
    return {
        "name": status["channel"],
        "state": status.get("state"),
        "state_since": status.get("state_since"),
        "generation": status.get("generation"),
        "last_generation": None
        if last is None
        else {k: last.get(k) for k in ("generation_id", "started", "duration", "outcome", "module", "error")},
        "failed_generations": status.get("failed_generations", 0),
        "sources": sources,
        "last_error": status.get("last_error"),
        "failed_module": status.get("failed_module") if status.get("state") == "ERROR" else None,
        "failing_sources": failing_sources,
        "standby": bool(status.get("standby")),
        "config_error": bool(status.get("config_error")),
        "failing": failing,
        "database_unreachable_since": status.get("database_unreachable_since"),
        "restart_at": status.get("restart_at"),
        "last_failure": status.get("last_failure"),
        "config_warnings": list(status.get("config_warnings") or []),
        "owner_server": status.get("owner_server"),
        "assigned_server": status.get("assigned_server"),
    }


def _channel(status: dict[str, Any]) -> dict[str, Any]:
    detail = _summary(status)
    detail["pid"] = status.get("pid")
    detail["busy"] = status.get("busy") or {}
    detail["restarts"] = status.get("restarts", 0)
    detail["history"] = [
        {k: record.get(k) for k in ("generation_id", "started", "duration", "outcome", "module", "error")}
        for record in status.get("history") or []
    ]
    return detail


def _graph(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    producers = plan["producers"]
    nodes = [
        {k: spec[k] for k in ("key", "kind", "module", "class_name", "produces", "consumes")}
        for spec in plan["modules"]
    ]
    edges = [
        {"from": producers[product], "to": spec["key"], "product": product}
        for spec in plan["modules"]
        for product in spec["consumes"]
        if product in producers
    ]
    return {"channel": name, "nodes": nodes, "edges": edges, "transform_order": plan["transform_order"]}


# -- parameters --------------------------------------------------------------------------------


def _number(
    params: dict[str, Any],
    name: str,
    default: float,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
) -> float:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw) if integer else float(raw)
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise ApiError(400, f"parameter {name!r} must be {kind}, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ApiError(400, f"parameter {name!r} must be at least {minimum:g}, not {raw!r}")
    if maximum is not None and value > maximum:
        raise ApiError(400, f"parameter {name!r} must be at most {maximum:g}, not {raw!r}")
    return value


def _columns(params: dict[str, Any]) -> list[str] | None:
    raw = params.get("columns")
    if raw in (None, ""):
        return None
    if isinstance(raw, list):
        raw = ",".join(raw)
    return [c.strip() for c in str(raw).split(",") if c.strip()]


def _time(params: dict[str, Any], name: str, default: float) -> float:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        number = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
    try:
        return parse_time(str(raw))
    except ValueError:
        raise ApiError(
            400, f"parameter {name!r} must be epoch seconds, a duration (2h) or an ISO time, not {raw!r}"
        ) from None


def _point(value: Any, column: str | None, agg: str) -> Any:
    if isinstance(value, pd.DataFrame):
        if column is None:
            return len(value)
        if column not in value.columns:
            raise ApiError(400, f"unknown column {column!r}; columns are {[str(c) for c in value.columns]}")
        series = pd.to_numeric(value[column], errors="coerce")
        result = AGGREGATES[agg](series)
        return None if result is None or pd.isna(result) else float(result)
    if column is not None:
        raise ApiError(400, "column applies to DataFrame products")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if hasattr(value, "__len__"):
        return len(value)
    raise ApiError(400, f"product values of type {type(value).__name__} have no number to chart")
