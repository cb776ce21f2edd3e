"""A small Server-Sent Events reader (the client side of ``/api/v1/events``).

SSE is text: ``field: value`` lines, an empty line ends an event, lines starting with
``:`` are comments (keep-alives).  Only ``event`` and ``data`` matter to us.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.cli.connection import ServerLocation


@dataclass(frozen=True)
class Event:
    name: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the lines of a stream (without their line ends)."""
    name, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield Event(name, "\n".join(data))
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)


def stream(
    url: str,
    timeout: float | None = None,
    on_connected: Callable[[], None] | None = None,
    location: ServerLocation | None = None,
) -> Iterator[Event]:
    """Connect to ``url`` and yield its events until the server closes the stream;
    ``on_connected()`` is called once the server has accepted the subscription.

    With ``location`` (TLS, a Unix socket, a token), ``url`` is the path on that server.
    """
    headers = {"Accept": "text/event-stream"}
    if location is not None:
        connection = location.http_connection(timeout)
        headers.update(location.headers())
        path = url
    else:
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    if response.status != 200:
        body = response.read(2000).decode(errors="replace")
        raise ConnectionError(f"{url} answered {response.status} {response.reason}: {body.strip()}")
    if on_connected is not None:
        on_connected()

    def lines() -> Iterator[str]:
        while True:
            raw = response.readline()
            if not raw:
                return
            yield raw.decode("utf-8").rstrip("\r\n")

    try:
        yield from parse(lines())
    finally:
        connection.close()
