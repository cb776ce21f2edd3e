"""``de-query-tool``: read products straight from the DataSpace, no server needed.

* ``--list``: channels, their latest generation and its time;
* ``CHANNEL``: the channel's recent generations and the products of the latest;
* ``CHANNEL PRODUCT``: the product's value in the latest generation (or ``--generation N``);
* ``CHANNEL PRODUCT --since 2h``: its history, one frame: a DataFrame product's rows of
  every generation with ``generation_id`` and ``generation_time`` in front, or one row per
  generation (``value``) for other products.

Output as a table, CSV, JSON or Parquet (``--format``, or from ``--output``'s extension).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import pathlib
import sys
from collections.abc import Iterator
from typing import Any

import pandas as pd
from tabulate import tabulate

from decisionengine.framework.cli import extras
from decisionengine.framework.cli.common import (
    CommandError,
    dataspace_config,
    dataspace_parser,
    parse_time,
    read_only,
)
from decisionengine.framework.cli.common import (
    console as run_console,
)
from decisionengine.framework.cli.extras import enable_completion
from decisionengine.framework.cli.paged_output import shown, table_text, write_pages
from decisionengine.framework.dataspace.dataspace import DataSpace, DataSpaceError
from decisionengine.framework.web.presentation import displayed, history_pages, to_jsonable

PROG = "de-query-tool"
FORMATS = ("table", "csv", "json", "parquet")
#: rows of a page of history: what de-query-tool holds in memory while it writes a long one
HISTORY_PAGE_ROWS = 50_000
EPILOG = """The DataSpace is the one de-server uses with the same --config/--state-dir (or
$CONFIG_PATH/$DE_STATE_DIR), or --url.  It is opened read-only: nothing is ever created.

examples:
  de-query-tool --list
  de-query-tool --state-dir run --list                    the quick start's server
  de-query-tool demo                                      generations and products of channel demo
  de-query-tool demo demand                               the latest value of product demand
  de-query-tool demo demand --generation 120 --format json
  de-query-tool demo demand --since 2h --output demand.parquet
  de-query-tool demo provisioning_plan --since 2026-11-01T12:00 --until 2026-11-02 --format csv
Times: a duration ago (30m, 2h, 3d, 1w) or an ISO time (local when it has no offset).
Completion: eval "$(register-python-argcomplete de-query-tool)"
"""


def build_parser() -> argparse.ArgumentParser:
    parser = dataspace_parser(PROG, "Read decision engine products (and their history) from the DataSpace.", EPILOG)
    parser.add_argument("channel", nargs="?", help="channel name")
    parser.add_argument("product", nargs="?", help="product name")
    parser.add_argument("--list", action="store_true", help="list the channels in the DataSpace")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--generation", type=int, help="a given generation instead of the latest")
    when.add_argument("--since", type=parse_time, help="history since a time (30m, 2h, ISO time)")
    parser.add_argument("--until", type=parse_time, help="history until a time (with --since)")
    parser.add_argument("--columns", help="comma-separated columns of a DataFrame product")
    parser.add_argument("--format", choices=FORMATS, help="output format (default: table, or from --output)")
    parser.add_argument("--output", "-o", help="write to this file instead of the terminal")
    parser.add_argument(
        "--page-rows",
        type=_positive,
        default=HISTORY_PAGE_ROWS,
        metavar="N",
        help=f"write a history about N rows at a time: what it holds in memory (default {HISTORY_PAGE_ROWS:,})",
    )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


# -- reading ---------------------------------------------------------------------------------


def _known(space: DataSpace, channel: str) -> None:
    known = space.channel_names()
    if channel not in known:
        raise CommandError(f"no channel {channel!r} in the DataSpace; channels: {', '.join(known) or 'none'}")


def _registration(space: DataSpace, channel: str) -> dict[str, Any]:
    _known(space, channel)
    return space.get_taskmanager(channel)


def list_channels(space: DataSpace) -> pd.DataFrame:
    rows = []
    for name in space.channel_names():
        registration = space.get_taskmanager(name)
        generations = space.get_generations(registration["sequence_id"])
        last = generations[-1] if generations else None
        rows.append(
            {
                "channel": name,
                "generations": len(generations),
                "latest_generation": last["generation_id"] if last else None,
                "latest_time": _iso(last["generation_time"]) if last else None,
                "products": last["products"] if last else 0,
            }
        )
    return pd.DataFrame(rows, columns=["channel", "generations", "latest_generation", "latest_time", "products"])


def describe_channel(space: DataSpace, channel: str) -> dict[str, Any]:
    registration = _registration(space, channel)
    generations = space.get_generations(registration["sequence_id"])
    latest = space.latest_generation(channel, ())
    keys = space.get_keys(latest.sequence_id, latest.generation_id) if latest else []
    return {
        "channel": channel,
        "taskmanager_id": registration["taskmanager_id"],
        "registrations": len(space.get_taskmanagers(channel)),
        "generations": len(generations),
        "first_generation": generations[0]["generation_id"] if generations else None,
        "latest_generation": latest.generation_id if latest else None,
        "latest_time": _iso(latest.generation_time) if latest and latest.generation_time else None,
        "products": keys,
    }


def product_value(space: DataSpace, channel: str, product: str, generation: int | None) -> tuple[int, Any]:
    if generation is None:
        latest = space.latest_generation(channel, [product])
        if latest is None:
            _known(space, channel)
            raise CommandError(f"channel {channel!r} has no generation yet")
        if product not in latest.products:
            keys = space.get_keys(latest.sequence_id, latest.generation_id)
            raise CommandError(
                f"no product {product!r} in generation {latest.generation_id} of channel {channel!r}; "
                f"products: {', '.join(keys) or 'none'}"
            )
        return latest.generation_id, displayed(latest.products[product])
    registration = _registration(space, channel)
    try:
        return generation, displayed(space.get_dataproduct(registration["sequence_id"], generation, product))
    except KeyError as exc:
        raise CommandError(exc.args[0] if exc.args else str(exc)) from None


def product_history(
    space: DataSpace,
    channel: str,
    product: str,
    since: float,
    until: float | None,
    columns: str | None = None,
    page_rows: int = HISTORY_PAGE_ROWS,
) -> Iterator[pd.DataFrame]:
    """Every generation's value of ``product`` since ``since``, across all the channel's
    registrations (oldest first; see :func:`history_pages`), as pages of about
    ``page_rows`` rows, each read as the one before is written."""
    _known(space, channel)
    registrations = space.get_taskmanagers(channel)
    several = _contributors(space, registrations, product, since, until) > 1
    items = (
        {**item, "taskmanager_id": registration["taskmanager_id"]}
        for registration in registrations
        for item in space.iter_products(registration["sequence_id"], product, since, until)
    )

    def pages() -> Iterator[pd.DataFrame]:
        try:
            for page in history_pages(items, product, several=several, page_rows=page_rows):
                yield _select(page, columns)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    return pages()


def _contributors(
    space: DataSpace, registrations: list[dict[str, Any]], product: str, since: float, until: float | None
) -> int:
    """How many registrations have ``product`` in the time range (counting to two: more
    than one gets a ``taskmanager_id`` column).  Each is asked for its first item only."""
    found = 0
    for registration in registrations if len(registrations) > 1 else ():
        items = space.iter_products(registration["sequence_id"], product, since, until)
        try:
            if next(items, None) is not None:
                found += 1
        finally:
            items.close()
        if found > 1:
            break
    return found


# -- writing ---------------------------------------------------------------------------------


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _select(value: Any, columns: str | None) -> Any:
    if not columns:
        return value
    if not isinstance(value, pd.DataFrame):
        raise CommandError("--columns applies to DataFrame products")
    wanted = [c.strip() for c in columns.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in value.columns]
    if unknown:
        raise CommandError(f"unknown columns {unknown}; columns are {list(value.columns)}", 2)
    keep = [c for c in ("generation_id", "generation_time") if c in value.columns and c not in wanted]
    return value[keep + wanted]


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.output:
        suffix = pathlib.Path(args.output).suffix.lower().lstrip(".")
        return {"csv": "csv", "json": "json", "parquet": "parquet", "pq": "parquet"}.get(suffix, "table")
    return "table"


def render(value: Any, fmt: str) -> bytes:
    """``value`` (a DataFrame or any product) in format ``fmt``."""
    if fmt == "parquet":
        frame = value if isinstance(value, pd.DataFrame) else pd.DataFrame({"value": [json.dumps(to_jsonable(value))]})
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    if fmt == "json":
        return (json.dumps(to_jsonable(value), indent=2) + "\n").encode()
    if isinstance(value, pd.DataFrame):
        if fmt == "csv":
            return shown(value, "csv").to_csv(index=False).encode()
        return table_text(value).encode()
    if fmt == "csv":
        return pd.DataFrame({"value": [json.dumps(to_jsonable(value))]}).to_csv(index=False).encode()
    return (json.dumps(to_jsonable(value), indent=2) + "\n").encode()


def emit(data: bytes, args: argparse.Namespace, fmt: str) -> None:
    if args.output:
        pathlib.Path(args.output).write_bytes(data)
        print(f"wrote {args.output} ({fmt}, {len(data):,} bytes)", file=sys.stderr)
    elif fmt == "parquet":
        raise CommandError("parquet is binary: give --output FILE", 2)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    enable_completion(parser)
    args = parser.parse_args(argv)
    if not args.list and not args.channel:
        parser.error("give --list, or a CHANNEL (and a PRODUCT)")
    if (args.since is not None or args.generation is not None or args.columns) and not args.product:
        parser.error("--since, --generation and --columns need a PRODUCT")
    if args.until is not None and args.since is None:
        parser.error("--until needs --since")
    fmt = _format(args)
    if fmt == "parquet":
        extras.require("parquet")  # before the DataSpace is opened
    try:
        space = DataSpace(read_only(dataspace_config(args)))
    except DataSpaceError as exc:
        raise CommandError(str(exc)) from None
    try:
        if args.list:
            emit(render(list_channels(space), fmt), args, fmt)
        elif not args.product:
            description = describe_channel(space, args.channel)
            if fmt == "table":
                print(
                    tabulate(
                        [[k, ", ".join(v) if isinstance(v, list) else v] for k, v in description.items()],
                        tablefmt="plain",
                    )
                )
            else:
                emit(render(description, fmt), args, fmt)
        elif args.since is not None:
            pages = product_history(
                space, args.channel, args.product, args.since, args.until, args.columns, args.page_rows
            )
            write_pages(pages, fmt, args.output, f"product {args.product!r} of channel {args.channel!r}")
        else:
            _generation, value = product_value(space, args.channel, args.product, args.generation)
            emit(render(_select(value, args.columns), fmt), args, fmt)
    except DataSpaceError as exc:
        raise CommandError(str(exc)) from None
    finally:
        space.close()
    return 0


def console() -> None:
    run_console(main, PROG)


if __name__ == "__main__":
    console()
