"""The reference server's text answers, for its clients and the scripts that read them.

The reference's ``de-client --print-product`` and ``de-query-tool`` print what the server
answers, and sites have scripts that cut that text apart: a ``Product P:  Found in channel
C`` line per channel, then the product as a ``psql`` table, one table per row
(``vertical``), the column names (``column-names``), pandas' column-oriented JSON
(``json``) or CSV (``csv``; the reference's ``print_product`` answered a table instead).
The XML-RPC methods :meth:`~.xmlrpc.XmlRpcMethods.print_product` and
:meth:`~.xmlrpc.XmlRpcMethods.query_tool` answer in this layout; our own clients use the
structured answers (``get_product``, the JSON API) instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from tabulate import tabulate

from decisionengine.framework.web.presentation import dumps

#: None (or "") is the reference's default: a table
FORMATS = ("table", "vertical", "column-names", "json", "csv")


def check_format(value: Any, name: str = "format") -> str:
    """A reference format name (None: table); ValueError names the ones there are."""
    if value is None or value == "":
        return "table"
    if not isinstance(value, str) or value.lower() not in FORMATS:
        raise ValueError(f"unknown {name} {value!r}; use one of {', '.join(FORMATS)} (or none for a table)")
    return value.lower()


def frame_text(frame: pd.DataFrame, fmt: str) -> str:
    """A DataFrame as the reference rendered it (index included, as pandas shows it)."""
    if fmt == "vertical":
        return "".join(
            f"Row {number}\n{tabulate(frame.T.iloc[:, [number]], tablefmt='psql')}\n" for number in range(len(frame))
        )
    if fmt == "column-names":
        rows = [[str(column)] for column in frame.columns]
        return f"{tabulate(rows, headers=['columns'], tablefmt='psql')}\n"
    if fmt == "json":
        return f"{json.dumps(json.loads(frame.to_json(date_format='iso', default_handler=str)), indent=4)}\n"
    if fmt == "csv":
        return f"{frame.to_csv()}\n"
    return f"{tabulate(frame, headers='keys', tablefmt='psql')}\n"


def value_text(value: Any, fmt: str) -> str:
    """A product: DataFrames (and Series) as :func:`frame_text`; other values (which the
    reference could not show) as JSON for ``json``, else their ``repr``."""
    if isinstance(value, pd.Series):
        value = value.to_frame()
    if isinstance(value, pd.DataFrame):
        return frame_text(value, fmt)
    if fmt == "json":
        return f"{dumps(value)}\n"
    if fmt == "csv":
        return frame_text(pd.DataFrame({"value": [value]}), fmt)
    return f"{value!r}\n"


def product_text(product: str, documents: Iterable[Mapping[str, Any]], fmt: str) -> str:
    """``print_product``'s answer: each channel holding the product, with its value."""
    text = f"Product {product}: "
    for document in documents:
        text += f" Found in channel {document['channel']}\n"
        text += value_text(document["value"], fmt)
    return text[:-1]  # as the reference: no final newline


#: the columns the reference's ``query_tool`` adds to each product row, in its order
HISTORY_COLUMNS = ("channel", "taskmanager_id", "generation_id")


def history_text(product: str, histories: Iterable[Mapping[str, Any]], fmt: str) -> str:
    """``query_tool``'s answer: the channels holding the product, then one table of every
    generation's rows: the product's columns, then ``channel``, ``taskmanager_id`` and
    ``generation_id`` as the reference's, and ``generation_time`` (ours)."""
    text = f"Product {product}: "
    frames = []
    for entry in histories:
        text += f" Found in channel {entry['channel']}\n"
        history: pd.DataFrame = entry["history"]
        values = [c for c in history.columns if c not in ("generation_id", "generation_time")]
        frame = history[values].copy()
        frame["channel"] = entry["channel"]
        frame["taskmanager_id"] = entry["taskmanager_id"]
        frame["generation_id"] = history["generation_id"]
        frame["generation_time"] = history["generation_time"]
        frames.append(frame)
    combined = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(HISTORY_COLUMNS))
    return text + frame_text(combined, fmt)
