"""Client queries over a product: the rows of a DataFrame that match, and some columns.

A client's query is untrusted text: it is checked against the logic engine's allow-list
of names and operations before it is evaluated, so it cannot run code on the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from decisionengine.framework.logicengine.expressions import compile_fact, evaluation_functions


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
