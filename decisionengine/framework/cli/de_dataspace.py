"""``de-dataspace``: work on a DataSpace as a whole.

``de-dataspace import-reference --from URL`` copies the history of a reference (HEPCloud)
Decision Engine database into the DataSpace ``de-server`` uses: every registration with
products, every generation and product with its header and metadata, payloads stored once.
The work is done by :mod:`decisionengine.framework.dataspace.reference_import`; this
command finds the two databases, shows progress and prints the count check.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

from tabulate import tabulate

from decisionengine.framework.cli.common import (
    CommandError,
    add_location_arguments,
    dataspace_config,
    print_json,
    run,
    say,
)
from decisionengine.framework.cli.extras import enable_completion
from decisionengine.framework.dataspace.dataspace import DataSpaceError
from decisionengine.framework.dataspace.maintain import DEFAULT_RETENTION_INTERVAL_DAYS
from decisionengine.framework.dataspace.reference_import import (
    DEFAULT_BATCH_ROWS,
    ImportConflictError,
    ImportProgress,
    ImportReport,
    ReferenceImporter,
    ReferenceSource,
    open_target,
)

PROG = "de-dataspace"
#: exit status of an import stopped early (--max-batches): run it again to continue
STOPPED = 3
#: bad products listed in the human report (--json lists up to 1000)
SHOWN_BAD = 20
IMPORT_EPILOG = """The target is the DataSpace de-server uses with the same --config/--state-dir (or
$CONFIG_PATH/$DE_STATE_DIR), or --url; it is created when it does not exist yet.
The reference database is only read (SQLite read-only, PostgreSQL read-only transactions).

examples:
  de-dataspace import-reference --from postgresql://de@olddb/decisionengine --dry-run
  de-dataspace import-reference --from postgresql://de@olddb/decisionengine
  de-dataspace import-reference --from sqlite:////var/lib/de/old.sqlite --url sqlite:///de.sqlite --json
  de-dataspace import-reference --from ... --channel jobs --channel prices
Interrupted (Ctrl-C, a lost connection, --max-batches)? Run the same command again: it
continues after the last generation each task manager has in the target.
Exit status: 0 complete (bad values are reported and skipped), 1 error or count mismatch,
2 bad arguments or a channel the target already has, 3 stopped early (run again).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Work on a DataSpace as a whole.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    importing = commands.add_parser(
        "import-reference",
        help="copy a reference Decision Engine database into the DataSpace",
        description="Copy a reference (HEPCloud) Decision Engine database into the DataSpace: every task "
        "manager, generation and product with its header and metadata, payloads de-duplicated.",
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    importing.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URL",
        help="the reference database: sqlite:////path/file.sqlite or postgresql://user:pw@host/db",
    )
    where = importing.add_argument_group("which DataSpace to import into (default: the one de-server would use)")
    exclusive = where.add_mutually_exclusive_group()
    add_location_arguments(where, exclusive)
    exclusive.add_argument("--url", help="target DataSpace database URL, instead of the configuration")
    importing.add_argument(
        "--channel", action="append", metavar="NAME", help="import only this channel (repeat for more)"
    )
    importing.add_argument("--dry-run", action="store_true", help="count what would be copied; write nothing")
    importing.add_argument("--json", action="store_true", help="JSON report, for scripts")
    importing.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_ROWS,
        metavar="ROWS",
        help=f"source rows read at once (default {DEFAULT_BATCH_ROWS}; at most 32 MiB of values)",
    )
    importing.add_argument("--max-batches", type=int, metavar="N", help="stop after N batches (run again to continue)")
    importing.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    return parser


# -- progress ---------------------------------------------------------------------------------


class Progress:
    """A progress bar on a terminal (rich, on stderr), else a line on stderr every
    ``interval`` seconds; nothing with ``enabled`` false."""

    def __init__(self, enabled: bool, interval: float = 10.0) -> None:
        self.enabled = enabled
        self.interval = interval
        self.bar: Any = None
        self.task: Any = None
        self.started = time.monotonic()
        self.last_line = self.started
        if enabled and sys.stderr.isatty():
            from rich.console import Console  # noqa: PLC0415 - only on a terminal
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                MofNCompleteColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar  # noqa: PLC0415

            self.bar = Bar(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                "rows",
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()

    def update(self, progress: ImportProgress) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            if self.task is None:
                self.task = self.bar.add_task("importing", total=progress.rows_total)
            self.bar.update(
                self.task,
                completed=progress.rows_done,
                description=f"{progress.channel} generation {progress.generation_id}",
            )
            return
        now = time.monotonic()
        if now - self.last_line >= self.interval:
            self.last_line = now
            share = progress.rows_done / progress.rows_total * 100 if progress.rows_total else 100.0
            rate = progress.rows_done / (now - self.started)
            say(
                f"{PROG}: {progress.rows_done:,}/{progress.rows_total:,} rows ({share:.0f}%), "
                f"{rate:,.0f} rows/s, at {progress.channel} generation {progress.generation_id}"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


# -- the report -------------------------------------------------------------------------------


#: the count table's columns after channel and task manager: (header, attribute, totalled)
COUNTED = [
    ("generations", "generations", True),
    ("source rows", "rows", True),
    ("duplicates", "duplicates", True),
    ("products", "products", True),
]
DRY_RUN_COLUMNS = [
    *COUNTED,
    ("in target", "present", True),
    ("resume after", "resume_after", False),
    ("rows to copy", "rows_to_copy", True),
]
IMPORT_COLUMNS = [
    *COUNTED,
    ("copied now", "written", True),
    ("bad", "bad", True),
    ("in target", "present", True),
    ("missing", "missing", True),
    ("status", "status", False),
]


def _cell(taskmanager: Any, attribute: str) -> Any:
    value = getattr(taskmanager, attribute)
    return "-" if attribute == "resume_after" and not value else value


def show(report: ImportReport) -> None:
    """The count check as a table, then what was skipped and how fast it went."""
    version = f"reference {report.source_version}"
    if report.dry_run:
        print(f"dry run: nothing written. Would import {report.source} ({version}) into {report.target}")
        columns, overall = DRY_RUN_COLUMNS, ""
    else:
        print(f"imported {report.source} ({version}) into {report.target}")
        columns = IMPORT_COLUMNS
        overall = "complete" if report.complete else ("stopped" if report.stopped else "INCOMPLETE")
    rows = [[t.channel, t.taskmanager_id, *(_cell(t, name) for _, name, _ in columns)] for t in report.taskmanagers]
    totals = report.totals()
    last = {"status": overall}
    rows.append(["total", "", *(totals[name] if summed else last.get(name, "") for _, name, summed in columns)])
    headers = ["channel", "task manager", *(header for header, _, _ in columns)]
    print(tabulate(rows, headers=headers))
    if report.conflicts:
        print("\nconflicts (the import refuses to start):")
        for conflict in report.conflicts:
            print(f"  {conflict}")
    if report.bad_total:
        print(f"\nnot imported: {report.bad_total} products")
        shown = [[b.channel, b.generation_id, b.key, b.reason] for b in report.bad_products[:SHOWN_BAD]]
        print(tabulate(shown, headers=["channel", "generation", "key", "reason"]))
        if report.bad_total > SHOWN_BAD:
            print(f"... and {report.bad_total - SHOWN_BAD} more (--json lists up to {len(report.bad_products)})")
    if report.duplicates_total:
        print(
            f"\n{report.duplicates_total} products appear more than once in the source "
            "(the last row of each was kept; --json lists them)"
        )
    for skipped in report.skipped_taskmanagers:
        print(
            f"task manager {skipped['taskmanager_id']} ({skipped['name']!r}, sequence id "
            f"{skipped['sequence_id']}) not copied: {skipped['reason']}"
        )
    older = report.totals()["older_than_retention"]
    if older:
        print(
            f"\nwarning: {older:,} of these generations are older than retention_interval_in_days "
            f"({report.retention_days:g}): the Reaper deletes them (all but each task manager's newest) "
            "at its next pass. To keep them, raise retention_interval_in_days before de-server starts."
        )
    if report.unregistered_rows:
        print(f"{report.unregistered_rows} source rows name no registered task manager: not copied")
    if not report.dry_run:
        print(
            f"\nread {report.rows_read:,} rows ({report.value_bytes_read:,} bytes of values) in "
            f"{report.elapsed:.1f} s: {report.rows_per_second:,.0f} rows/s; {report.values_decoded:,} values "
            f"decoded (the others repeated one); {report.products_written:,} products written, "
            f"{report.payloads_added:,} new payloads ({report.payload_bytes_added:,} bytes)"
        )
        if report.stopped:
            print(f"stopped after {report.batches} batches: run the same command again to continue")


def import_reference(args: argparse.Namespace) -> int:
    config = dataspace_config(args)
    if args.state_dir and not args.dry_run:
        pathlib.Path(args.state_dir).mkdir(parents=True, exist_ok=True)  # as de-server does
    try:
        source = ReferenceSource(args.source)
    except DataSpaceError as exc:
        raise CommandError(f"--from: {exc}") from None
    if args.channel:
        known = {tm.name for tm in source.taskmanagers()}
        unknown = sorted(set(args.channel) - known)
        if unknown:
            source.close()
            raise CommandError(
                f"--channel: no channel {', '.join(map(repr, unknown))} in the reference; "
                f"its channels: {', '.join(sorted(n for n in known if n)) or 'none'}",
                2,
            )
    target = None
    progress = Progress(enabled=not args.no_progress and not args.dry_run)
    try:
        try:
            target = open_target(config, dry_run=args.dry_run)
        except DataSpaceError as exc:
            raise CommandError(str(exc)) from None
        importer = ReferenceImporter(
            source,
            target,
            dry_run=args.dry_run,
            channels=args.channel,
            batch_rows=args.batch_size,
            max_batches=args.max_batches,
            progress=progress.update,
            retention_days=(config.get("dataspace") or {}).get(
                "retention_interval_in_days", DEFAULT_RETENTION_INTERVAL_DAYS
            ),
        )
        try:
            report = importer.run()
        except ImportConflictError as exc:
            raise CommandError(str(exc), 2) from None
        except DataSpaceError as exc:
            raise CommandError(f"{exc} (what was imported stays: run the same command again to continue)") from None
        except KeyboardInterrupt:
            progress.close()
            say(f"{PROG}: interrupted; what was imported stays: run the same command again to continue")
            return 130
    finally:
        progress.close()
        source.close()
        if target is not None:
            target.close()
    if args.json:
        print_json(report.as_dict())
    else:
        show(report)
    if report.dry_run:
        return 2 if report.conflicts else 0
    if report.stopped:
        return STOPPED
    return 0 if report.complete else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    enable_completion(parser)
    args = parser.parse_args(argv)
    if args.command == "import-reference":
        if args.batch_size < 1:
            parser.error("--batch-size must be at least 1")
        if args.max_batches is not None and args.max_batches < 0:
            parser.error("--max-batches must be at least 0")
        return import_reference(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse refuses first
    return 2


def console() -> None:
    sys.exit(run(main, None, PROG))


if __name__ == "__main__":
    console()
