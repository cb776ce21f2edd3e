"""Rendering what the server knows as text tables (for people), CSV, or JSON (for scripts).

The control service returns data; the XML-RPC methods (which answer text, as the
reference server does) and the command-line tools render it here, so a table looks the
same whichever way it reached the operator.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from decisionengine.framework.dataspace.datasource import LatestGeneration
from decisionengine.framework.taskmanager.PublisherStatus import PublisherStatus

FORMATS = ("table", "csv", "json", "vertical")


def check_format(fmt: str, allowed: Sequence[str] = FORMATS) -> str:
    fmt = (fmt or "table").lower()
    if fmt not in allowed:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(allowed)}")
    return fmt


def when(epoch: float | None) -> str:
    """An epoch time as local ISO time to the second, '-' for none."""
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def ago(epoch: float | None, now: float) -> str:
    if epoch is None:
        return "never"
    seconds = max(0.0, now - epoch)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit} ago"
    return f"{seconds:.1f}s ago"


def displayed(value: Any) -> Any:
    """A product as readers show it: itself, except a
    :class:`~decisionengine.framework.taskmanager.PublisherStatus.PublisherStatus`
    (``publisher_status``), shown as its table (ran, succeeded, seconds, error, then
    enabled and since), so that queries, columns, paging and history treat it as the
    DataFrame it was before it answered the reference's API.  Products stored in that
    earlier format are DataFrames already."""
    if isinstance(value, PublisherStatus):
        return value.to_frame()
    return value


def displayed_generation(latest: LatestGeneration | None) -> LatestGeneration | None:
    """``latest`` (or None) with its products :func:`displayed`."""
    if latest is None or not any(isinstance(v, PublisherStatus) for v in latest.products.values()):
        return latest
    products = {key: displayed(value) for key, value in latest.products.items()}
    return dataclasses.replace(latest, products=products)


def displayed_items(items: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The DataSpace's ``iter_products`` items with their values :func:`displayed`."""
    for item in items:
        yield {**item, "value": displayed(item["value"])}


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from products and snapshots (DataFrames become lists of records)."""
    if isinstance(value, pd.DataFrame):
        return json.loads(value.to_json(orient="records", date_format="iso", default_handler=str))
    if isinstance(value, pd.Series):
        return json.loads(value.to_json(date_format="iso", default_handler=str))
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=False)


def describe_value(value: Any) -> dict[str, Any]:
    """Type and shape of a product, without its content."""
    info: dict[str, Any] = {"type": type(value).__name__}
    if isinstance(value, pd.DataFrame):
        info["shape"] = list(value.shape)
        info["columns"] = [str(c) for c in value.columns]
        info["numeric_columns"] = [
            str(c) for c in value.columns if pd.api.types.is_numeric_dtype(value[c]) and value[c].dtype != bool
        ]
    elif isinstance(value, np.ndarray):
        info["shape"] = list(value.shape)
    elif isinstance(value, Mapping | list | tuple | set):
        info["length"] = len(value)
    return info


def render_value(value: Any, fmt: str = "table", max_rows: int | None = None) -> str:
    """A product as a table, CSV, JSON or one record per block (vertical)."""
    fmt = check_format(fmt)
    if isinstance(value, pd.Series):
        value = value.to_frame()
    if fmt == "json":
        return dumps(value)
    if isinstance(value, pd.DataFrame):
        shown = value if max_rows is None or len(value) <= max_rows else value.head(max_rows)
        if fmt == "csv":
            buffer = io.StringIO()
            shown.to_csv(buffer, index=False)
            return buffer.getvalue()
        if fmt == "vertical":
            text = vertical(shown)
        else:
            text = tabulate(shown, headers="keys", tablefmt="psql", showindex=True, missingval="")
        if shown is not value:
            text += f"\n... {len(value) - len(shown)} more rows ({len(value)} in all)"
        return text
    if fmt == "csv":
        frame = pd.DataFrame(value if isinstance(value, list) else [value])
        return frame.to_csv(index=False)
    if isinstance(value, Mapping | list | tuple):
        return dumps(value)
    return repr(value)


def with_types(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``<column>.type`` column after each column: the Python type name of
    each value (the reference's ``print_product --types``)."""
    typed = frame.copy()
    for column in frame.columns:
        names = frame[column].astype(object).map(lambda value: type(value).__name__)
        typed.insert(typed.columns.get_loc(column) + 1, f"{column}.type", names, allow_duplicates=True)
    return typed


def history_frame(items: Iterable[Mapping[str, Any]], product: str) -> pd.DataFrame:
    """A product's history as one frame, from the DataSpace's ``iter_products`` items.

    A DataFrame product gives every generation's rows with ``generation_id`` and
    ``generation_time`` (UTC) in front; any other product one row per generation, its
    ``value`` (dicts and lists as JSON text, so that CSV and Parquet can hold them).
    The server's ``query_tool`` reads history this way; ``de-query-tool --since`` the same
    a page at a time (:func:`history_pages`).
    Items may name their ``taskmanager_id``: a channel's history may span several
    registrations (the reference registered a channel anew at every start, and an import
    keeps them), and when more than one contributes, a ``taskmanager_id`` column says which
    (generation ids repeat across them).
    ValueError when the product changed between a DataFrame and another type.
    """
    items = list(items)
    several = len({item.get("taskmanager_id") for item in items}) > 1
    return next(history_pages(items, product, several=several, page_rows=None))


def history_pages(
    items: Iterable[Mapping[str, Any]], product: str, *, several: bool, page_rows: int | None
) -> Iterator[pd.DataFrame]:
    """:func:`history_frame` in pages of about ``page_rows`` rows (whole generations; None:
    one page), taking items only as each page needs them: a history of any length is
    written with one page in memory.  ``several`` says whether a ``taskmanager_id`` column
    is wanted (the caller knows whether more than one registration contributes).  Always at
    least one page (empty for an empty history).  ValueError, when the page that shows it
    comes, if the product changed between a DataFrame and another type."""
    kind: bool | None = None  # True: DataFrames; False: other values
    as_json: bool | None = None  # other values: dicts and lists as JSON text, decided on the first page
    page: list[dict[str, Any]] = []
    rows = 0
    yielded = False
    for item in displayed_items(items):
        is_frame = isinstance(item["value"], pd.DataFrame)
        if kind is None:
            kind = is_frame
        elif kind != is_frame:
            raise ValueError(f"product {product!r} changed between a DataFrame and other types: cannot make one table")
        page.append(item)
        rows += len(item["value"]) if is_frame else 1
        if page_rows is not None and rows >= page_rows:
            frame, as_json = _history_page(page, several, as_json)
            yield frame
            yielded, page, rows = True, [], 0
    if page or not yielded:
        yield _history_page(page, several, as_json)[0]


def _history_page(items: list[dict[str, Any]], several: bool, as_json: bool | None) -> tuple[pd.DataFrame, bool | None]:
    """One page of :func:`history_pages` (items all DataFrames or all other values), and
    whether other values are shown as JSON text (the first page that has any decides)."""
    frames = []
    scalar_rows = []
    for item in items:
        front = {
            "generation_id": item["generation_id"],
            "generation_time": pd.Timestamp(item["generation_time"], unit="s", tz="UTC"),
            **({"taskmanager_id": item.get("taskmanager_id")} if several else {}),
        }
        value = item["value"]
        if isinstance(value, pd.DataFrame):
            frame = value.reset_index(drop=True).copy()
            for position, (column, content) in enumerate(front.items()):
                frame.insert(position, column, content)
            frames.append(frame)
        else:
            scalar_rows.append({**front, "value": value})
    if frames:
        return pd.concat(frames, ignore_index=True), as_json
    columns = ["generation_id", "generation_time", *(["taskmanager_id"] if several else []), "value"]
    history = pd.DataFrame(scalar_rows, columns=columns)
    if as_json is None and scalar_rows:
        as_json = any(isinstance(v, dict | list | tuple) for v in history["value"])
    if as_json:
        history["value"] = [json.dumps(to_jsonable(v)) for v in history["value"]]
    return history, as_json


def vertical(frame: pd.DataFrame) -> str:
    """One block per row, one line per column: for frames wider than the terminal."""
    width = max((len(str(c)) for c in frame.columns), default=0)
    blocks = []
    for label, row in frame.iterrows():
        # the row's own label (the product's index), not its position: a filtered product
        # keeps the labels it had
        lines = [f"*** row {label} ***"]
        lines += [f"{str(column).rjust(width)}: {row[column]}" for column in frame.columns]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def status_table(channels: Iterable[Mapping[str, Any]], now: float) -> str:
    """One block per channel: its state, generation, sources and last error.

    ``generation`` is the last committed generation; when a newer one is running, the
    "last generation" line names that one's number, so its time is never read as the
    committed generation's.
    """
    out = []
    for status in channels:
        last = status.get("last_generation") or {}
        failing = status.get("failing_sources") or {}
        state = status.get("state")
        if failing and state not in ("ERROR", "SHUTDOWN", "OFFLINE"):
            state = f"{state} (failing sources: {', '.join(sorted(failing))})"
        header = [
            ["channel", status.get("channel")],
            ["state", state],
            ["generation", status.get("generation") if status.get("generation") is not None else "-"],
            ["last generation", _last_generation(last) if last else "-"],
            ["failed generations", status.get("failed_generations", 0)],
        ]
        if status.get("pid"):
            header.append(["pid", status.get("pid")])
        if status.get("owner_server") or status.get("assigned_server"):
            header.append(["runs on", status.get("owner_server") or f"{status.get('assigned_server')} (taking it)"])
        if status.get("last_error"):
            header.append(["last error", status["last_error"]])
        failed = status.get("failed_module")
        if failed and status.get("state") == "ERROR":
            header.append(["failed module", f"{failed.get('module')}: {failed.get('error')}"])
        for key, source in sorted(failing.items()):
            header.append(
                [
                    "failing source",
                    f"{key} since {ago(source.get('since'), now)} "
                    f"({source.get('missed_update_count', 0)} missed updates): {source.get('last_error')}",
                ]
            )
        header += [["config warning", warning] for warning in status.get("config_warnings") or ()]
        header += _recovery_lines(status, now)
        out.append(tabulate(header, tablefmt="plain"))
        sources = status.get("sources") or {}
        if sources:
            rows = [
                [
                    key,
                    ago(source.get("last_update"), now),
                    source.get("deliveries", 0),
                    source.get("missed_update_count", 0),
                    source.get("last_error") or "",
                ]
                for key, source in sources.items()
            ]
            out.append(
                tabulate(
                    rows,
                    headers=["source", "last update", "deliveries", "missed updates", "last error"],
                    tablefmt="simple",
                )
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _recovery_lines(status: Mapping[str, Any], now: float) -> list[list[Any]]:
    """What the server is doing about a fault: a database it waits for, a restart it will make."""
    lines: list[list[Any]] = []
    if status.get("database_unreachable_since"):
        lines.append(["database", f"unreachable since {ago(status['database_unreachable_since'], now)}; retrying"])
    if status.get("restart_at"):
        wait = max(0.0, status["restart_at"] - now)
        lines.append(["restart", f"in {wait:.1f}s (failure {status.get('failures_in_a_row', 0)} in a row)"])
    if status.get("restarts"):
        lines.append(["restarts", status["restarts"]])
    failure = status.get("last_failure")
    if failure and status.get("state") != "ERROR":
        lines.append(["last failure", f"{ago(failure.get('at'), now)}: {failure.get('reason')}"])
    return lines


def _last_generation(record: Mapping[str, Any]) -> str:
    number = record.get("generation_id")
    prefix = f"{number} " if number is not None else ""
    return f"{prefix}started {when(record.get('started'))} ({record.get('outcome', '-')})"


def status_text(status: Mapping[str, Any], now: float) -> str:
    """The whole server status: every channel, then the Reaper, then the cluster."""
    reaper = status["reaper"]
    text = (
        status_table(status["channels"], now)
        + f"reaper: {reaper['state']} (runs {reaper['runs']}, next {when(reaper['next_run'])})\n"
    )
    sources = status.get("sources") or []
    if any(row.get("shared") for row in sources):  # which channels share which source
        text += "\n" + sources_text(sources, now)
    cluster = status.get("cluster")
    if cluster and len(cluster.get("members") or ()) > 1:
        text += "\n" + cluster_text(cluster, now)
    return text


def cluster_text(cluster: Mapping[str, Any] | None, now: float) -> str:
    """The servers sharing the DataSpace: one row each, with the channels each holds."""
    if not cluster:
        return "this server's data source cannot share channels with other servers\n"
    rows = []
    for member in cluster.get("members") or ():
        name = member["name"] + (" (this server)" if member.get("this_server") else "")
        rows.append(
            [
                name,
                f"{member['host']}:{member['pid']}",
                "draining" if member.get("draining") else "active",
                len(member.get("holding") or ()),
                len(member.get("assigned") or ()),
                ago(member.get("heartbeat_at"), now),
                ", ".join(member.get("holding") or ()) or "-",
            ]
        )
    headers = ["server", "process", "mode", "holds", "assigned", "heartbeat", "channels"]
    text = tabulate(rows, headers=headers, tablefmt="simple") + "\n"
    if cluster.get("database_unreachable_since"):
        since = when(cluster["database_unreachable_since"])
        text += f"cluster heartbeat failing since {since}: {cluster.get('last_error')}\n"
    return text


def drain_text(answer: Mapping[str, Any]) -> str:
    """What a drain left on this server."""
    running = answer.get("running") or []
    if not answer.get("draining"):
        return f"not draining; {len(running)} channel(s) run here\n"
    if answer.get("drained"):
        return "drained: no channel runs on this server\n"
    text = f"draining: {len(running)} channel(s) still run here: {', '.join(running)}\n"
    if answer.get("cannot_move"):
        text += f"no other live server offers: {', '.join(answer['cannot_move'])}\n"
    return text


def queue_text(
    channels: Iterable[Mapping[str, Any]], now: float, source_rows: Iterable[Mapping[str, Any]] | None = None
) -> str:
    """``queue_status`` as a table: per source, whether a delivery waits for the next
    generation; per channel, the messages its process has not yet sent the server; then
    (``source_rows``) every source with its consumers, as the reference listed its sources."""
    rows = []
    for channel in channels:
        backlog = channel.get("link_backlog")
        link = "-" if backlog is None else backlog
        sources = channel.get("sources") or {}
        for key, source in sources.items():
            rows.append(
                [
                    channel["channel"],
                    key,
                    "yes" if source.get("pending") else "no",
                    source.get("deliveries", 0),
                    ago(source.get("last_update"), now),
                    link,
                ]
            )
        if not sources:
            rows.append([channel["channel"], "-", "-", "-", "-", link])
    headers = ["channel", "source", "delivery pending", "deliveries", "last update", "link backlog"]
    text = tabulate(rows, headers=headers, tablefmt="simple") + "\n"
    if source_rows is not None:
        text += "\n" + sources_text(source_rows, now)
    return text


def sources_text(sources: Iterable[Mapping[str, Any]], now: float) -> str:
    """Every source with its consumers: shared (one process for several channels) or in its channel."""
    rows = [
        [
            row["source"],
            "shared" if row.get("shared") else "in channel",
            ", ".join(row.get("consumers") or []) or "-",
            row.get("runs_on") or "-",
            row.get("schedule"),
            row.get("state") or "-",
            ago(row.get("last_acquire"), now),
            row.get("deliveries", 0),
            row.get("last_error") or "",
        ]
        for row in sources
    ]
    headers = ["source", "runs", "consumers", "runs on", "schedule", "state", "last acquire", "deliveries"]
    headers.append("last error")
    return tabulate(rows, headers=headers, tablefmt="simple") + "\n"


def reaper_text(status: Mapping[str, Any]) -> str:
    rows = [
        [k, when(v) if k in ("last_run_started", "last_run_finished", "next_run") else v] for k, v in status.items()
    ]
    return tabulate(rows, tablefmt="plain") + "\n"


def dependencies_text(graph: Mapping[str, Mapping[str, Any]]) -> str:
    blocks = []
    for name, dependencies in graph.items():
        rows = [[p, d["producer"], ", ".join(d["consumers"]) or "-"] for p, d in dependencies.items()]
        blocks.append(f"channel {name}:\n" + tabulate(rows, headers=["product", "producer", "consumers"]))
    return "\n\n".join(blocks) + "\n"


def latest_products_document(latest: Mapping[str, Any]) -> dict[str, Any]:
    """{channel: {state, generation, products: {key: type, shape and producer}}} of the
    channels ``ControlService.latest_products`` chose."""
    return {
        name: {
            "state": channel["state"],
            "generation": channel["generation"],
            "products": {
                key: {**describe_value(product["value"]), "producer": product["producer"]}
                for key, product in channel["products"].items()
            },
        }
        for name, channel in latest["channels"].items()
    }


def latest_products_text(latest: Mapping[str, Any], fmt: str, max_rows: int | None) -> str:
    """The chosen channels' latest products as tables (``vertical``: one block per row), each
    named with the module that produced it; when no channel is active, a line that says so
    (and how to see the stopped channels' stored products)."""
    channels = latest["channels"]
    stopped = latest.get("stopped") or []
    if not channels:
        if not stopped:
            return "no channel is configured\n"
        return (
            f"no channel is active ({len(stopped)} stopped: {', '.join(stopped)}); "
            "their stored products: --print-products --all\n"
        )
    text = []
    for name, channel in channels.items():
        number = channel["generation"] if channel["generation"] is not None else "-"
        text.append(f"channel {name}: generation {number} ({channel['state']})")
        for key, product in channel["products"].items():
            value = product["value"]
            info = describe_value(value)
            shape = f" {tuple(info['shape'])}" if "shape" in info else ""
            producer = f" from {product['producer']}" if product.get("producer") else ""
            text.append(f"\n  product {key} ({info['type']}{shape}){producer}:")
            rendered = render_value(value, "vertical" if fmt == "vertical" else "table", max_rows)
            text.append("\n".join("    " + line for line in rendered.splitlines()))
        text.append("")
    if stopped:
        text.append(f"not active, not shown: {', '.join(stopped)} (--print-products --all shows them)\n")
    return "\n".join(text) + "\n"


def index_labels(frame: pd.DataFrame) -> list[Any]:
    """A frame's index as JSON data (a MultiIndex's labels as lists).

    JSON records carry no index, so a client that rebuilt the frame from them numbered the
    rows 0, 1, 2...: after a query the product's own row labels were lost.  The JSON
    document carries them beside the records (``index``), and clients rebuild the frame
    with them."""
    return [to_jsonable(label) for label in frame.index]


def product_text(document: Mapping[str, Any], fmt: str, max_rows: int | None) -> str:
    """One product (as the control service returns it) in ``fmt``."""
    if fmt == "json":
        value = document["value"]
        if isinstance(value, pd.DataFrame):
            names = [None if name is None else str(name) for name in value.index.names]
            return dumps({**document, "index": index_labels(value), "index_names": names})
        return dumps(document)
    rendered = render_value(document["value"], fmt, max_rows)
    if fmt == "csv":
        return rendered
    return (
        f"channel {document['channel']}, generation {document['generation']}, product {document['product']}:\n"
        f"{rendered}\n"
    )
