"""The OpenAPI 3.1 document of the JSON API (served at ``/api/v1/openapi.json``).

Written by hand next to the handlers in :mod:`.api`; the test suite validates every real
response of a running server against the schemas here, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from decisionengine import __version__

NUMBER_OR_NULL = {"type": ["number", "null"]}
STRING_OR_NULL = {"type": ["string", "null"]}
INTEGER_OR_NULL = {"type": ["integer", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": sorted(required), "properties": {**required, **(optional or {})}}


GENERATION = _object(
    {
        "generation_id": {"type": "integer"},
        "started": {"type": "number"},
        "duration": NUMBER_OR_NULL,
        "outcome": {"type": "string", "enum": ["running", "committed", "failed", "publish_failed"]},
        "module": STRING_OR_NULL,
        "error": STRING_OR_NULL,
    }
)

SOURCE = _object(
    {
        "last_update": NUMBER_OR_NULL,
        "deliveries": {"type": "integer"},
        "missed_update_count": {"type": "integer"},
        "last_error": STRING_OR_NULL,
    }
)

STATES = ["BOOT", "ACTIVE", "STEADY", "OFFLINE", "SHUTTINGDOWN", "SHUTDOWN", "ERROR"]

CHANNEL = _object(
    {
        "name": {"type": "string"},
        "state": {"type": "string", "enum": STATES},
        "state_since": NUMBER_OR_NULL,
        "generation": INTEGER_OR_NULL,
        "last_generation": {"oneOf": [{"type": "null"}, _ref("Generation")]},
        "failed_generations": {"type": "integer"},
        "sources": {"type": "object", "additionalProperties": _ref("Source")},
        "last_error": STRING_OR_NULL,
        "standby": {"type": "boolean"},
        "config_error": {"type": "boolean"},
        "failing": {
            "type": "boolean",
            "description": "ERROR, a failed last generation, or a source missing updates (failing_sources)",
        },
        "failed_module": {
            "type": ["object", "null"],
            "description": "in ERROR: the module whose failures put the channel there, and its error",
            "properties": {"module": {"type": "string"}, "error": STRING_OR_NULL, "generation": INTEGER_OR_NULL},
        },
        "failing_sources": {
            "type": "object",
            "description": "sources that keep failing (no success since): since when, missed updates, last error",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "since": NUMBER_OR_NULL,
                    "missed_update_count": {"type": "integer"},
                    "last_error": STRING_OR_NULL,
                },
            },
        },
        "database_unreachable_since": {
            "type": ["number", "null"],
            "description": "epoch seconds since the channel cannot reach the database (it retries)",
        },
        "restart_at": {
            "type": ["number", "null"],
            "description": "epoch seconds of the automatic restart of a failed channel, if one is pending",
        },
        "last_failure": {
            "type": ["object", "null"],
            "description": "the last time the channel's process ended in ERROR (kept across restarts)",
            "properties": {
                "reason": STRING_OR_NULL,
                "at": {"type": "number"},
                "exit_code": INTEGER_OR_NULL,
            },
        },
        "config_warnings": {
            "type": "array",
            "items": {"type": "string"},
            "description": "what validation accepted with a warning (a parameter left out, a converted default)",
        },
        "owner_server": {
            "type": ["string", "null"],
            "description": "the server (cluster.server_name) whose process holds the channel now",
        },
        "assigned_server": {
            "type": ["string", "null"],
            "description": "the server the cluster gives the channel to (differs from owner_server during a hand-over)",
        },
    }
)

MEMBER = _object(
    {
        "server_id": {"type": "string"},
        "name": {"type": "string"},
        "host": {"type": "string"},
        "pid": {"type": "integer"},
        "started_at": {"type": "number"},
        "heartbeat_at": {"type": "number"},
        "draining": {"type": "boolean"},
        "this_server": {"type": "boolean"},
        "channels": {"type": "array", "items": {"type": "string"}, "description": "channels it offers to run"},
        "assigned": {"type": "array", "items": {"type": "string"}, "description": "channels the cluster gives it"},
        "holding": {"type": "array", "items": {"type": "string"}, "description": "channels its processes hold"},
    }
)

CLUSTER = _object(
    {
        "server_id": {"type": "string"},
        "server_name": {"type": "string"},
        "draining": {"type": "boolean"},
        "members": {"type": "array", "items": _ref("Member")},
    },
    {
        "heartbeat_interval": {"type": "number"},
        "member_timeout": {"type": "number"},
        "viewed_at": NUMBER_OR_NULL,
        "database_unreachable_since": NUMBER_OR_NULL,
        "last_error": STRING_OR_NULL,
        "drain": _object(
            {
                "draining": {"type": "boolean"},
                "running": {"type": "array", "items": {"type": "string"}},
                "cannot_move": {"type": "array", "items": {"type": "string"}},
                "drained": {"type": "boolean"},
            }
        ),
    },
)

CHANNEL_DETAIL = {
    "allOf": [
        _ref("Channel"),
        _object(
            {
                "pid": INTEGER_OR_NULL,
                "busy": {"type": "object", "additionalProperties": {"type": "number"}},
                "restarts": {"type": "integer"},
                "history": {"type": "array", "items": _ref("Generation")},
            }
        ),
    ]
}

GRAPH = _object(
    {
        "channel": {"type": "string"},
        "nodes": {
            "type": "array",
            "items": _object(
                {
                    "key": {"type": "string"},
                    "kind": {"type": "string", "enum": ["source", "transform", "logicengine", "publisher"]},
                    "module": {"type": "string"},
                    "class_name": {"type": "string"},
                    "produces": {"type": "array", "items": {"type": "string"}},
                    "consumes": {"type": "array", "items": {"type": "string"}},
                }
            ),
        },
        "edges": {
            "type": "array",
            "items": _object({"from": {"type": "string"}, "to": {"type": "string"}, "product": {"type": "string"}}),
        },
        "transform_order": {"type": "array", "items": {"type": "string"}},
    }
)

PRODUCTS = _object(
    {
        "channel": {"type": "string"},
        "generation": INTEGER_OR_NULL,
        "products": {
            "type": "array",
            "items": _object(
                {"name": {"type": "string"}, "type": {"type": "string"}},
                {
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "numeric_columns": {"type": "array", "items": {"type": "string"}},
                    "length": {"type": "integer"},
                },
            ),
        },
    }
)

PRODUCT = {
    "oneOf": [
        _object(
            {
                "channel": {"type": "string"},
                "generation": {"type": "integer"},
                "product": {"type": "string"},
                "type": {"const": "DataFrame"},
                "total_rows": {"type": "integer"},
                "offset": {"type": "integer"},
                "limit": {"type": "integer"},
                "columns": {"type": "array", "items": {"type": "string"}},
                "rows": {"type": "array", "items": {"type": "object"}},
            }
        ),
        _object(
            {
                "channel": {"type": "string"},
                "generation": {"type": "integer"},
                "product": {"type": "string"},
                "type": {"type": "string", "not": {"const": "DataFrame"}},
                "value": {},
            }
        ),
    ]
}

HISTORY = _object(
    {
        "channel": {"type": "string"},
        "product": {"type": "string"},
        "since": {"type": "number"},
        "measure": {"type": "string", "description": "rows, or agg(column)"},
        "points": {
            "type": "array",
            "items": _object(
                {"generation_id": {"type": "integer"}, "generation_time": {"type": "number"}, "value": NUMBER_OR_NULL}
            ),
        },
    }
)

DECISIONS = _object(
    {
        "channel": {"type": "string"},
        "decisions": {
            "type": "array",
            "items": _object(
                {
                    "generation_id": {"type": "integer"},
                    "generation_time": {"type": "number"},
                    "facts": {
                        "type": "array",
                        "items": _object({"fact_name": {"type": "string"}, "fact_value": {"type": "boolean"}}),
                    },
                    "new_facts": {
                        "type": "array",
                        "items": _object(
                            {
                                "rule_name": {"type": "string"},
                                "fact_name": {"type": "string"},
                                "fact_value": {"type": "boolean"},
                            }
                        ),
                    },
                    "publishers": {
                        "type": "array",
                        "items": _object({"publisher": {"type": "string"}, "ran": {"type": "boolean"}}),
                    },
                    "actions": {"type": "array", "items": {"type": "string"}},
                    "published": {
                        "type": "boolean",
                        "description": "the publishers have finished (false: the newest generation may be publishing)",
                    },
                }
            ),
        },
    }
)

SERVER_SOURCE = _object(
    {
        "source": {"type": "string"},
        "shared": {"type": "boolean", "description": "runs in a process of its own for several channels"},
        "channels": {"type": "array", "items": {"type": "string"}, "description": "the channels naming it"},
        "consumers": {"type": "array", "items": {"type": "string"}, "description": "the running ones it feeds"},
        "schedule": {"type": ["number", "string", "null"]},
        "state": {"type": ["string", "null"]},
        "last_acquire": {"type": ["number", "null"]},
        "deliveries": {"type": "integer"},
        "missed_update_count": {"type": "integer"},
        "last_error": {"type": ["string", "null"]},
        "pid": {"type": ["integer", "null"]},
        "runs_on": {
            "type": ["string", "null"],
            "description": "the server it runs on (in a cluster a shared source runs on one server for all)",
        },
    },
    {
        "restarts": {"type": ["integer", "null"]},
        "generation": {"type": ["integer", "null"]},
        "taskmanager": {"type": "string"},
    },
)
SOURCES = _object({"sources": {"type": "array", "items": _ref("ServerSource")}})

REAPER = _object(
    {
        "state": {
            "type": "string",
            "enum": ["OFFLINE", "IDLE", "ACTIVE", "STEADY", "SHUTTINGDOWN", "SHUTDOWN", "ERROR"],
        },
        "retention_interval_in_days": {"type": "number"},
        "reaper_run_interval": {"type": "number"},
        "runs": {"type": "integer"},
        "failures": {"type": "integer"},
        "last_run_started": NUMBER_OR_NULL,
        "last_run_finished": NUMBER_OR_NULL,
        "next_run": NUMBER_OR_NULL,
        "last_error": STRING_OR_NULL,
        "last_removed": {"type": ["object", "null"]},
    }
)

ERROR = _object({"error": {"type": "string"}})

INDEX = _object(
    {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "openapi": {"type": "string", "description": "path of this document"},
        "dashboard": {"type": "string"},
        "events": {"type": "string"},
        "resources": {
            "type": "array",
            "items": _object({"path": {"type": "string"}, "methods": {"type": "array", "items": {"type": "string"}}}),
        },
    }
)

SCHEMAS = {
    "Index": INDEX,
    "Generation": GENERATION,
    "Source": SOURCE,
    "Channel": CHANNEL,
    "ChannelDetail": CHANNEL_DETAIL,
    "ChannelList": _object({"channels": {"type": "array", "items": _ref("Channel")}}),
    "Graph": GRAPH,
    "Products": PRODUCTS,
    "Product": PRODUCT,
    "History": HISTORY,
    "Decisions": DECISIONS,
    "Reaper": REAPER,
    "ServerSource": SERVER_SOURCE,
    "Sources": SOURCES,
    "Member": MEMBER,
    "Cluster": CLUSTER,
    "ControlResult": _object({"result": {"type": "string"}}, {"channel": _ref("Channel"), "reaper": _ref("Reaper")}),
    "Error": ERROR,
}


def _response(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {
        400: "a parameter is invalid",
        401: "the API token is missing or wrong",
        403: "the API is read-only (no api_token configured)",
        404: "no such channel, product or path",
        405: "wrong method",
        409: "not available in the channel's current state",
        413: "the request body is too large",
    }
    return {str(code): _response("Error", meaning[code]) for code in codes}


def _param(name: str, where: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema,
        "description": description,
    }


CHANNEL_NAME = _param("name", "path", {"type": "string"}, "channel name")
PRODUCT_KEY = _param("key", "path", {"type": "string"}, "product name")
SINCE = _param("since", "query", {"type": "string"}, "epoch seconds, a duration ago (30m, 2h, 3d) or an ISO time")
SECURED = [{"bearer": []}]


def document() -> dict[str, Any]:
    get = "get"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "decisionengine",
            "version": __version__,
            "description": "Channels, their products and decisions, and control (with the API token).",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/": {
                get: {
                    "summary": "an index: this document, the dashboard, the event stream, every resource",
                    "responses": {"200": _response("Index", "the index")},
                }
            },
            "/channels": {
                get: {"summary": "every channel", "responses": {"200": _response("ChannelList", "channels")}}
            },
            "/channels/{name}": {
                get: {
                    "summary": "one channel",
                    "parameters": [CHANNEL_NAME],
                    "responses": {"200": _response("ChannelDetail", "the channel"), **_errors(404)},
                }
            },
            "/channels/{name}/graph": {
                get: {
                    "summary": "the channel's modules and the products between them",
                    "parameters": [CHANNEL_NAME],
                    "responses": {"200": _response("Graph", "the module graph"), **_errors(404, 409)},
                }
            },
            "/channels/{name}/products": {
                get: {
                    "summary": "the products of the latest generation",
                    "parameters": [CHANNEL_NAME],
                    "responses": {"200": _response("Products", "names, types, shapes"), **_errors(404)},
                }
            },
            "/channels/{name}/products/{key}": {
                get: {
                    "summary": "one product's value in the latest generation (DataFrames paged)",
                    "parameters": [
                        CHANNEL_NAME,
                        PRODUCT_KEY,
                        _param("offset", "query", {"type": "integer", "minimum": 0}, "first row"),
                        _param("limit", "query", {"type": "integer", "minimum": 0, "maximum": 100000}, "rows"),
                        _param("columns", "query", {"type": "string"}, "comma-separated columns"),
                    ],
                    "responses": {"200": _response("Product", "the value"), **_errors(400, 404)},
                }
            },
            "/channels/{name}/products/{key}/history": {
                get: {
                    "summary": "a number per generation: the row count, or an aggregate of a column",
                    "parameters": [
                        CHANNEL_NAME,
                        PRODUCT_KEY,
                        SINCE,
                        _param("column", "query", {"type": "string"}, "numeric column of a DataFrame product"),
                        _param(
                            "agg",
                            "query",
                            {"type": "string", "enum": ["sum", "mean", "min", "max", "last"]},
                            "how a column becomes one number (default sum)",
                        ),
                    ],
                    "responses": {"200": _response("History", "points"), **_errors(400, 404)},
                }
            },
            "/channels/{name}/decisions": {
                get: {
                    "summary": "facts, new facts and publishers per generation",
                    "parameters": [
                        CHANNEL_NAME,
                        SINCE,
                        _param("limit", "query", {"type": "integer", "minimum": 1}, "the last N generations"),
                    ],
                    "responses": {"200": _response("Decisions", "decisions"), **_errors(400, 404)},
                }
            },
            "/channels/{name}/start": {
                "post": {
                    "summary": "start a channel",
                    "security": SECURED,
                    "parameters": [CHANNEL_NAME],
                    "responses": {
                        "200": _response("ControlResult", "started"),
                        **_errors(401, 403, 404, 409, 413),
                    },
                }
            },
            "/channels/{name}/stop": {
                "post": {
                    "summary": "stop a channel",
                    "security": SECURED,
                    "parameters": [CHANNEL_NAME],
                    "responses": {"200": _response("ControlResult", "stopped"), **_errors(401, 403, 404, 409)},
                }
            },
            "/cluster": {
                get: {
                    "summary": "the servers sharing the DataSpace, the channels each holds, and this server's drain",
                    "responses": {"200": _response("Cluster", "the cluster"), **_errors(409)},
                }
            },
            "/cluster/drain": {
                "post": {
                    "summary": "hand this server's channels to the other servers (poll /cluster until drain.drained)",
                    "security": SECURED,
                    "responses": {"200": _response("Cluster", "draining"), **_errors(401, 403, 409)},
                }
            },
            "/cluster/undrain": {
                "post": {
                    "summary": "end a drain: this server takes its share of channels again",
                    "security": SECURED,
                    "responses": {"200": _response("Cluster", "not draining"), **_errors(401, 403, 409)},
                }
            },
            "/sources": {
                get: {
                    "summary": "every source: shared or in its channel, consumers, schedule, state, last acquire",
                    "responses": {"200": _response("Sources", "the sources")},
                }
            },
            "/reaper": {get: {"summary": "the Reaper", "responses": {"200": _response("Reaper", "its status")}}},
            "/reaper/start": {
                "post": {
                    "summary": "start the Reaper",
                    "security": SECURED,
                    "parameters": [
                        _param("delay", "query", {"type": "number", "minimum": 0}, "seconds to the first pass")
                    ],
                    "responses": {"200": _response("ControlResult", "started"), **_errors(400, 401, 403)},
                }
            },
            "/reaper/stop": {
                "post": {
                    "summary": "stop the Reaper",
                    "security": SECURED,
                    "responses": {"200": _response("ControlResult", "stopped"), **_errors(401, 403)},
                }
            },
            "/events": {
                get: {
                    "summary": "Server-Sent Events: 'generation' {channel, generation, time, outcome, duration} "
                    "and 'state' {channel, state, since}; ': keepalive' comments every 15 s",
                    "parameters": [_param("channel", "query", {"type": "string"}, "only this channel's events")],
                    "responses": {
                        "200": {"description": "an event stream", "content": {"text/event-stream": {}}},
                        **_errors(404),
                    },
                }
            },
        },
    }
