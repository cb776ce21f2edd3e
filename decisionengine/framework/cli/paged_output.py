"""Writing a table that comes in pages (a long product history) in de-query-tool's formats,
one page in memory at a time.

``de-query-tool CHANNEL PRODUCT --since ...`` can cover months of generations: building it
as one frame first would need the whole history in memory, twice (the values and their
concatenation).  Here each format writes a page as it comes: CSV rows under one header, a
JSON array one record at a time, Parquet one row group per page, a table per page.  A
file given with ``--output`` is written beside its final name and renamed into place when
complete, so a failure part-way leaves no half-written file (and an older file untouched).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import sys
from collections.abc import Iterable
from typing import IO, Any, Protocol

import pandas as pd
from tabulate import tabulate

from decisionengine.framework.cli.common import CommandError
from decisionengine.framework.web.presentation import to_jsonable


def local_zone() -> datetime.tzinfo | None:
    return datetime.datetime.now().astimezone().tzinfo


def shown(frame: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """``frame`` with its zoned times as text: full precision in CSV (it is for programs),
    local time to the millisecond in a table (it is for people).  The local zone is looked
    up once per page, not once per value."""
    if fmt == "csv":
        as_text = lambda t: t.isoformat()  # noqa: E731
    else:
        zone = local_zone()
        as_text = lambda t: t.tz_convert(zone).isoformat(timespec="milliseconds")  # noqa: E731
    result = frame.copy()
    for column in result.columns:
        if isinstance(result[column].dtype, pd.DatetimeTZDtype):
            result[column] = result[column].map(as_text)
    return result


def table_text(frame: pd.DataFrame) -> str:
    return tabulate(shown(frame, "table"), headers="keys", tablefmt="psql", showindex=False, missingval="") + "\n"


class PageWriter(Protocol):
    def write(self, page: pd.DataFrame) -> None: ...

    def close(self) -> None: ...


class CsvPages:
    """One header, then every page's rows."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.header = True

    def write(self, page: pd.DataFrame) -> None:
        self.out.write(shown(page, "csv").to_csv(index=False, header=self.header).encode())
        self.header = False

    def close(self) -> None:
        pass


class JsonPages:
    """One JSON array of records, as ``json.dumps(records, indent=2)`` writes it whole."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.records = 0

    def write(self, page: pd.DataFrame) -> None:
        for record in to_jsonable(page):
            text = json.dumps(record, indent=2).replace("\n", "\n  ")
            self.out.write(("[\n  " if self.records == 0 else ",\n  ").encode() + text.encode())
            self.records += 1

    def close(self) -> None:
        self.out.write(b"\n]\n" if self.records else b"[]\n")


class TablePages:
    """A table per page (each with its header: column widths are a page's)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def write(self, page: pd.DataFrame) -> None:
        self.out.write(table_text(page).encode())

    def close(self) -> None:
        pass


class ParquetPages:
    """One Parquet file, a row group per page, with the first page's schema."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.writer: Any = None
        self.schema: Any = None

    def write(self, page: pd.DataFrame) -> None:
        import pyarrow as pa  # noqa: PLC0415 (the parquet extra: checked before anything is read)
        import pyarrow.parquet as pq  # noqa: PLC0415

        table = pa.Table.from_pandas(page, preserve_index=False)
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.out, self.schema)
        elif not table.schema.equals(self.schema, check_metadata=False):
            try:
                table = table.cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise CommandError(
                    f"the product's column types changed within the history ({exc}); "
                    "Parquet needs one schema: give --since after the change, or --format csv"
                ) from None
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


WRITERS: dict[str, type[PageWriter]] = {
    "csv": CsvPages,
    "json": JsonPages,
    "table": TablePages,
    "parquet": ParquetPages,
}


def same_columns(page: pd.DataFrame, header: list[str], what: str) -> pd.DataFrame:
    """``page`` with the first page's columns: a column it lacks is empty (as a join of
    the whole history would show it); a column the first page did not have cannot be
    added to what is written already, so it is an error that names it."""
    extra = [column for column in page.columns if column not in header]
    if extra:
        first = page["generation_id"].iloc[0] if "generation_id" in page.columns and len(page) else "?"
        raise CommandError(
            f"{what} has columns {extra} from about generation {first} on that earlier generations lack; "
            "give --columns, or a --since after the change"
        )
    return page.reindex(columns=header)


def write_pages(pages: Iterable[pd.DataFrame], fmt: str, output: str | None, what: str) -> None:
    """Write ``pages`` (frames of one table) to ``output`` (a file) or standard output."""
    if output is None:
        if fmt == "parquet":
            raise CommandError("parquet is binary: give --output FILE", 2)
        _write(pages, fmt, sys.stdout.buffer, what, flush=True)
        return
    path = pathlib.Path(output)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("wb") as out:
            _write(pages, fmt, out, what, flush=False)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {output} ({fmt}, {path.stat().st_size:,} bytes)", file=sys.stderr)


def _write(pages: Iterable[pd.DataFrame], fmt: str, out: IO[bytes], what: str, flush: bool) -> None:
    writer = WRITERS[fmt](out)
    header: list[str] | None = None
    for page in pages:
        if header is None:
            header = list(page.columns)
        writer.write(same_columns(page, header, what))
        if flush:
            out.flush()
    writer.close()
    if flush:
        out.flush()
