"""Server-Sent Events: the text form of the live events (``/api/v1/events``).

SSE is text: ``event:`` and ``data:`` lines, an empty line ends an event, and lines
starting with ``:`` are comments, sent as keep-alives so proxies and clients know the
stream is still there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from decisionengine.framework.web.presentation import to_jsonable


def encode(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(to_jsonable(data))}\n\n".encode()


def stream(events: Iterable[Any]) -> Iterator[bytes]:
    """The bytes of a stream: a greeting, then each event (None: a keep-alive comment)."""
    yield b": connected\n\n"
    for event in events:
        if event is None:
            yield b": keepalive\n\n"
        else:
            yield encode(event.name, event.data)
