"""A small HTTP client for API tests (stdlib only), and OpenAPI validation of what it gets."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def http(method: str, url: str, token: str | None = None, body: bytes | None = None) -> tuple[int, Any, Any]:
    """(status, headers (case-insensitive), parsed JSON body) of one request."""
    request = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
    text = raw.decode()
    assert "Traceback" not in text
    return status, headers, json.loads(text) if raw else None


class OpenApiChecker:
    """Validates real responses against the schemas of the server's own OpenAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry = Registry().with_resource("openapi.json", resource)
        self.checked: set[tuple[str, str, str]] = set()

    def schema(self, path: str, method: str, status: int) -> dict[str, Any]:
        responses = self.document["paths"][path][method]["responses"]
        content = responses[str(status)]["content"]["application/json"]["schema"]
        return {"$ref": f"openapi.json{content['$ref']}"} if "$ref" in content else content

    def check(self, path: str, method: str, status: int, body: Any) -> None:
        validator = jsonschema.Draft202012Validator(self.schema(path, method, status), registry=self.registry)
        validator.validate(body)
        self.checked.add((path, method, str(status)))
