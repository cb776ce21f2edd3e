"""Reading channels' products from the DataSpace for the server's answers.

The server does not ask channel processes for their data: it reads the latest committed
generation from the DataSpace, so a question never waits on a busy (or hung) channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.logicengine.expressions import compile_fact, evaluation_functions


def latest_generation(dataspace: DataSpace, channel: str) -> tuple[int, int] | None:
    """(sequence id, latest generation) of a channel, None if it has stored nothing."""
    try:
        registration = dataspace.get_taskmanager(channel)
    except KeyError:
        return None
    last = dataspace.get_last_generation_id(channel, registration["taskmanager_id"])
    return (registration["sequence_id"], last) if last else None


def latest_products(dataspace: DataSpace, channel: str) -> tuple[int | None, dict[str, Any]]:
    """(generation, {product: value}) of a channel's latest generation."""
    found = latest_generation(dataspace, channel)
    if found is None:
        return None, {}
    sequence, generation = found
    return generation, dataspace.get_datablock(sequence, generation)


def select(value: Any, columns: Iterable[str] | None = None, query: str | None = None) -> Any:
    """Rows of a DataFrame product matching ``query`` and only ``columns``.

    ``query`` is a boolean expression over column names, checked with the logic engine's
    allow-list (so a query cannot run code on the server): ``cores > 4 and site == "A"``.
    """
    if columns is None and not query:
        return value
    if not isinstance(value, pd.DataFrame):
        raise ValueError(f"--query and --columns apply to DataFrame products, not to a {type(value).__name__}")
    frame = value
    if query:
        expression, _ = compile_fact(query, "query")
        unknown = sorted(expression.names - {str(c) for c in frame.columns})
        if unknown:
            raise ValueError(f"query {query!r} names unknown columns {unknown}; columns are {list(frame.columns)}")
        namespace = {**evaluation_functions(), **{name: frame[name] for name in expression.names}}
        mask = eval(expression.code, namespace)
        if not isinstance(mask, pd.Series) or mask.dtype != bool:
            raise ValueError(f"query {query!r} must give one true/false value per row")
        frame = frame[mask]
    if columns is not None:
        wanted = list(columns)
        unknown = [c for c in wanted if c not in frame.columns]
        if unknown:
            raise ValueError(f"unknown columns {unknown}; columns are {list(frame.columns)}")
        frame = frame[wanted]
    return frame
