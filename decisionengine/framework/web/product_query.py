"""Client queries over a product: the rows of a DataFrame that match, and some columns.

A client's query is untrusted text.  It is checked here, in the request thread, against
the client-query allow-list (:mod:`.query_language`), so a refused query costs no worker;
then only the columns it reads go to a worker process (:mod:`.query_runner`), where it is
checked again, evaluated under a time and memory limit, and answered with one bool per
row.  Selecting the rows and columns happens here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from decisionengine.framework.web.query_language import compile_query
from decisionengine.framework.web.query_runner import QueryRunner


def select(
    value: Any, columns: Iterable[str] | None = None, query: str | None = None, runner: QueryRunner | None = None
) -> Any:
    """Rows of a DataFrame product matching ``query`` and only ``columns``.

    ``query`` is a boolean expression over columns in the client-query language
    (``cores > 4 and site == 'A'``), evaluated by ``runner``; it raises
    :class:`~.query_language.QueryError` when refused, failed or stopped.
    """
    if columns is None and not query:
        return value
    if not isinstance(value, pd.DataFrame):
        raise ValueError(f"--query and --columns apply to DataFrame products, not to a {type(value).__name__}")
    frame = value
    if query:
        if runner is None:
            raise ValueError("client queries are evaluated by a QueryRunner, never in the calling process")
        compiled = compile_query(query, list(frame.columns))
        mask = runner.mask(query, frame.iloc[:, compiled.positions])
        frame = frame[mask]
    if columns is not None:
        wanted = list(columns)
        unknown = [c for c in wanted if c not in frame.columns]
        if unknown:
            raise ValueError(f"unknown columns {unknown}; columns are {list(frame.columns)}")
        frame = frame[wanted]
    return frame
