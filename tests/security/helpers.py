"""Attacking a real de-server: clients that send exactly the headers an attack needs."""

from __future__ import annotations

import http.client
import json
import time
import xmlrpc.client
from typing import Any

from tests.taskmanager.channels import module

CONTROL_TOKEN = "control-0123456789abcdef"
READ_TOKEN = "read-fedcba9876543210"


def steady_channel() -> dict[str, Any]:
    return {"sources": {"c": module("ConstantSource", schedule=0.5)}, "publishers": {}}


def rpc(server: Any, token: str | None = None, headers: dict[str, str] | None = None) -> xmlrpc.client.ServerProxy:
    """An XML-RPC client of ``server`` sending ``token`` as a bearer token, and ``headers``."""
    extra = [("Authorization", f"Bearer {token}")] if token else []
    extra += list((headers or {}).items())
    transport = xmlrpc.client.Transport(headers=extra)
    return xmlrpc.client.ServerProxy(f"{server.url}/RPC2", allow_none=True, transport=transport)


def request(
    server: Any,
    method: str,
    path: str,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, body: parsed JSON when it is JSON, else text) of one raw request."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    text = raw.decode(errors="replace")
    assert "Traceback" not in text
    if answer_headers.get("content-type", "").startswith("application/json"):
        return response.status, answer_headers, json.loads(text)
    return response.status, answer_headers, text


def xmlrpc_body(method: str, *params: Any) -> bytes:
    return xmlrpc.client.dumps(params, method, allow_none=True).encode()


def still_answering(server: Any, within: float = 1.0, token: str | None = None) -> None:
    """The server answers a ping at once: an attack did not take it down or hold it up."""
    started = time.monotonic()
    assert rpc(server, token).ping() == "pong"
    assert time.monotonic() - started < within, f"ping took {time.monotonic() - started:.2f} s"
