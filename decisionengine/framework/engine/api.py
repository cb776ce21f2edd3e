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
GET   /reaper                                       the Reaper's status
POST  /channels/{name}/start, /channels/{name}/stop start or stop a channel (token)
POST  /reaper/start, /reaper/stop                   the Reaper (token)
GET   /events                                       Server-Sent Events (generation, state)
GET   /openapi.json                                 this API, as OpenAPI 3.1
====  ============================================  =========================================

Errors are ``{"error": message}`` with 400 (bad parameter), 401 (token missing or wrong),
403 (the API is read-only: no token configured), 404 (unknown channel, product or path),
405 (wrong method), 409 (not available yet), never a stack trace.
"""

from __future__ import annotations

import collections
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cherrypy
import pandas as pd
import structlog

from decisionengine.framework.engine import formatting, openapi
from decisionengine.framework.engine.cli_common import parse_time
from decisionengine.framework.engine.events import Event
from decisionengine.framework.taskmanager.TaskManager import FACT_VALUES, PUBLISHER_STATUS

FACTS = "de_logicengine_facts"
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


def _json(value: Any) -> bytes:
    return json.dumps(formatting.to_jsonable(value), separators=(",", ":")).encode()


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


class Api:
    """Mounted at ``/api/v1``; every path below goes through :meth:`default`."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.token: str | None = (engine.global_config.get("webserver") or {}).get("api_token") or None
        self.logger = structlog.get_logger("decisionengine").bind(module="api")
        self.cache = _PageCache()
        self._sequences: dict[str, int] = {}

    # -- plumbing ----------------------------------------------------------------------------

    @cherrypy.expose
    def default(self, *path: str, **params: Any) -> bytes:
        cherrypy.response.headers["Content-Type"] = "application/json"
        cherrypy.response.headers["Cache-Control"] = "no-store"
        try:
            return self._route(cherrypy.request.method, list(path), params)
        except ApiError as exc:
            cherrypy.response.status = exc.status
            if exc.status == 401:
                cherrypy.response.headers["WWW-Authenticate"] = 'Bearer realm="decisionengine"'
            return _json({"error": str(exc)})
        except Exception as exc:
            self.logger.exception("API request failed", path="/".join(path))
            cherrypy.response.status = 500
            return _json({"error": f"internal error ({type(exc).__name__})"})

    def _route(self, method: str, path: list[str], params: dict[str, Any]) -> bytes:
        match path:
            case ["openapi.json"]:
                self._only(method, "GET")
                return _json(openapi.document())
            case ["channels"]:
                self._only(method, "GET")
                return _json({"channels": [self._summary(s) for s in self.engine.channel_statuses()]})
            case ["channels", name]:
                self._only(method, "GET")
                return _json(self._channel(name))
            case ["channels", name, "graph"]:
                self._only(method, "GET")
                return _json(self._graph(name))
            case ["channels", name, "products"]:
                self._only(method, "GET")
                return _json(self._products(name))
            case ["channels", name, "products", key]:
                self._only(method, "GET")
                return self._product(name, key, params)
            case ["channels", name, "products", key, "history"]:
                self._only(method, "GET")
                return _json(self._history(name, key, params))
            case ["channels", name, "decisions"]:
                self._only(method, "GET")
                return _json(self._decisions(name, params))
            case ["channels", name, ("start" | "stop") as action]:
                self._only(method, "POST")
                self._authorize()
                return _json(self._control_channel(name, action))
            case ["reaper"]:
                self._only(method, "GET")
                return _json(self.engine.reaper.status())
            case ["reaper", ("start" | "stop") as action]:
                self._only(method, "POST")
                self._authorize()
                delay = _number(params, "delay", 0.0, minimum=0.0)
                result = self.engine.rpc_reaper_start(delay) if action == "start" else self.engine.rpc_reaper_stop()
                return _json({"result": result, "reaper": self.engine.reaper.status()})
        raise ApiError(404, f"no such API path: /api/v1/{'/'.join(path)}")

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            cherrypy.response.headers["Allow"] = allowed
            raise ApiError(405, f"use {allowed} here, not {method}")

    def _authorize(self) -> None:
        if self.token is None:
            raise ApiError(
                403, "the API is read-only: set webserver.api_token in the global configuration to allow control"
            )
        header = cherrypy.request.headers.get("Authorization", "")
        scheme, _, offered = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(offered.strip().encode(), self.token.encode()):
            raise ApiError(401, "this action needs the API token: Authorization: Bearer <token>")

    def _worker(self, name: str) -> Any:
        worker = self.engine.workers.get(name)
        if worker is None and name not in self.engine.config_failures:
            raise ApiError(404, f"no channel {name!r}")
        return worker

    def _status(self, name: str) -> dict[str, Any]:
        self._worker(name)
        for status in self.engine.channel_statuses():
            if status["channel"] == name:
                return status
        raise ApiError(404, f"no channel {name!r}")

    # -- channels ---------------------------------------------------------------------------------

    @staticmethod
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
        failing = (
            status.get("state") == "ERROR"
            or bool(last and last.get("outcome") in ("failed", "publish_failed"))
            or any(s["missed_update_count"] for s in sources.values())
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
            "standby": bool(status.get("standby")),
            "config_error": bool(status.get("config_error")),
            "failing": failing,
        }

    def _channel(self, name: str) -> dict[str, Any]:
        status = self._status(name)
        detail = self._summary(status)
        detail["pid"] = status.get("pid")
        detail["busy"] = status.get("busy") or {}
        detail["restarts"] = status.get("restarts", 0)
        detail["history"] = [
            {k: record.get(k) for k in ("generation_id", "started", "duration", "outcome", "module", "error")}
            for record in status.get("history") or []
        ]
        return detail

    def _graph(self, name: str) -> dict[str, Any]:
        worker = self._worker(name)
        plan = worker.plan if worker is not None else None
        if plan is None:
            raise ApiError(409, f"channel {name!r} has not been validated yet (or its configuration is invalid)")
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

    # -- products ---------------------------------------------------------------------------------

    def _latest(self, name: str) -> tuple[int, int] | None:
        """(registry sequence, latest committed generation) of a channel.

        A channel running here reports each commit, so its snapshot answers without a
        database query; a channel running on another server (or not at all) is looked up.
        """
        worker = self._worker(name)
        snapshot = worker.snapshot if worker is not None else {}
        generation, taskmanager_id = snapshot.get("generation"), snapshot.get("taskmanager_id")
        if generation and taskmanager_id and not snapshot.get("standby"):
            sequence = self._sequences.get(taskmanager_id)
            if sequence is None:
                sequence = self._sequences[taskmanager_id] = self.engine.dataspace.get_taskmanager(
                    name, taskmanager_id
                )["sequence_id"]
            return sequence, generation
        try:
            registration = self.engine.dataspace.get_taskmanager(name)
        except KeyError:
            return None
        generation = self.engine.dataspace.get_last_generation_id(name, registration["taskmanager_id"])
        return (registration["sequence_id"], generation) if generation else None

    def _products(self, name: str) -> dict[str, Any]:
        latest = self._latest(name)
        if latest is None:
            return {"channel": name, "generation": None, "products": []}
        sequence, generation = latest
        block = self.engine.dataspace.get_datablock(sequence, generation)
        return {
            "channel": name,
            "generation": generation,
            "products": [{"name": key, **formatting.describe_value(value)} for key, value in block.items()],
        }

    def _product(self, name: str, key: str, params: dict[str, Any]) -> bytes:
        offset = int(_number(params, "offset", 0, minimum=0, integer=True))
        limit = int(_number(params, "limit", DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT, integer=True))
        columns = _columns(params)
        latest = self._latest(name)
        if latest is None:
            raise ApiError(404, f"channel {name!r} has no generation yet")
        sequence, generation = latest
        cache_key = (name, generation, key, offset, limit, tuple(columns or ()))
        cached = self.cache.get(cache_key)
        if cached is not None:
            return cached
        try:
            value = self.engine.dataspace.get_dataproduct(sequence, generation, key)
        except KeyError:
            raise ApiError(404, f"no product {key!r} in generation {generation} of channel {name!r}") from None
        document: dict[str, Any] = {
            "channel": name,
            "generation": generation,
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
        self.cache.put(cache_key, body)
        return body

    def _history(self, name: str, key: str, params: dict[str, Any]) -> dict[str, Any]:
        since = _time(params, "since", time.time() - 86400)
        column = params.get("column") or None
        agg = params.get("agg") or "sum"
        if agg not in AGGREGATES:
            raise ApiError(400, f"agg must be one of {', '.join(AGGREGATES)}, not {agg!r}")
        latest = self._latest(name)
        points = []
        if latest is not None:
            for item in self.engine.dataspace.iter_products(latest[0], key, since):
                points.append(
                    {
                        "generation_id": item["generation_id"],
                        "generation_time": item["generation_time"],
                        "value": _point(item["value"], column, agg),
                    }
                )
        if latest is not None and not points and key not in self.engine.dataspace.get_keys(*latest):
            raise ApiError(404, f"no product {key!r} in channel {name!r}")
        measure = f"{agg}({column})" if column else "rows"
        return {"channel": name, "product": key, "since": since, "measure": measure, "points": points}

    def _decisions(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        limit = int(_number(params, "limit", 20, minimum=1, maximum=10_000, integer=True))
        since = _time(params, "since", 0.0)
        latest = self._latest(name)
        by_generation: dict[int, dict[str, Any]] = {}
        if latest is not None:
            sequence = latest[0]
            for product, field in ((FACT_VALUES, "facts"), (FACTS, "new_facts"), (PUBLISHER_STATUS, "publishers")):
                for item in self.engine.dataspace.iter_products(sequence, product, since):
                    entry = by_generation.setdefault(
                        item["generation_id"],
                        {
                            "generation_id": item["generation_id"],
                            "generation_time": item["generation_time"],
                            "facts": [],
                            "new_facts": [],
                            "publishers": [],
                        },
                    )
                    entry[field] = formatting.to_jsonable(item["value"])
        decisions = [by_generation[g] for g in sorted(by_generation)][-limit:]
        for entry in decisions:
            entry["actions"] = [p["publisher"] for p in entry["publishers"] if p.get("ran")]
        return {"channel": name, "decisions": decisions}

    # -- control ----------------------------------------------------------------------------------

    def _control_channel(self, name: str, action: str) -> dict[str, Any]:
        if name not in self.engine.workers and name not in self.engine.config_failures:
            raise ApiError(404, f"no channel {name!r}")
        try:
            result = self.engine.rpc_start_channel(name) if action == "start" else self.engine.rpc_stop_channel(name)
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        self.logger.info("channel controlled through the API", channel=name, action=action)
        return {"result": result, "channel": self._summary(self._status(name))}

    # -- live events ------------------------------------------------------------------------------

    @cherrypy.expose
    @cherrypy.config(**{"response.stream": True})
    def events(self, channel: str | None = None, **_: Any) -> Iterator[bytes]:
        if cherrypy.request.method != "GET":
            cherrypy.response.status = 405
            cherrypy.response.headers["Allow"] = "GET"
            cherrypy.response.headers["Content-Type"] = "application/json"
            return iter([_json({"error": "use GET here"})])
        if channel is not None and channel not in self.engine.workers:
            cherrypy.response.status = 404
            cherrypy.response.headers["Content-Type"] = "application/json"
            return iter([_json({"error": f"no channel {channel!r}"})])
        cherrypy.response.headers["Content-Type"] = "text/event-stream"
        cherrypy.response.headers["Cache-Control"] = "no-cache"
        cherrypy.response.headers["X-Accel-Buffering"] = "no"
        subscription = self.engine.events.subscribe(channel)
        return _stream(subscription.events(KEEPALIVE_SECONDS))


def _stream(events: Iterator[Event | None]) -> Iterator[bytes]:
    yield b": connected\n\n"
    for event in events:
        if event is None:
            yield b": keepalive\n\n"
        else:
            yield f"event: {event.name}\ndata: {json.dumps(formatting.to_jsonable(event.data))}\n\n".encode()


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
        return float(raw)
    except ValueError:
        pass
    try:
        return parse_time(str(raw))
    except Exception:
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
