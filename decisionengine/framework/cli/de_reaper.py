"""``de-reaper``: one Reaper pass against a DataSpace, from the command line.

Uses the same Reaper as the server (same retention rules, same batches), so it can run
from cron with the server's Reaper off (``de-server --no-reaper``).  ``--dry-run`` shows
what a pass would remove, per channel, and removes nothing.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from tabulate import tabulate

from decisionengine.framework.cli.common import (
    CommandError,
    dataspace_config,
    dataspace_parser,
    print_json,
    read_only,
    run,
)
from decisionengine.framework.cli.extras import enable_completion
from decisionengine.framework.dataspace.datasource import ReapReport
from decisionengine.framework.dataspace.dataspace import DataSpaceError
from decisionengine.framework.dataspace.maintain import DEFAULT_RETENTION_INTERVAL_DAYS, Reaper

PROG = "de-reaper"
EPILOG = """The DataSpace is the one de-server uses with the same --config/--state-dir (or
$CONFIG_PATH/$DE_STATE_DIR), or --url; it must exist (nothing is created).

examples:
  de-reaper --dry-run                         what would go, with the global configuration's retention
  de-reaper --retention-days 30               remove generations older than 30 days
  de-reaper --url postgresql://de@db/de --retention-days 90 --json
The newest generation of every channel is always kept; the retention is at least 7 days.
Completion: eval "$(register-python-argcomplete de-reaper)"
"""


def build_parser() -> argparse.ArgumentParser:
    parser = dataspace_parser(
        PROG, "Remove data older than the retention interval from a DataSpace (one Reaper pass).", EPILOG
    )
    parser.add_argument("--retention-days", type=float, help="override retention_interval_in_days (at least 7)")
    parser.add_argument("--batch-size", type=int, help="generations per batch (default: reaper_batch_size)")
    parser.add_argument("--dry-run", action="store_true", help="show what would be removed; remove nothing")
    parser.add_argument("--json", action="store_true", help="JSON output, for scripts")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    return parser


def report_dict(report: ReapReport, reaper: Reaper) -> dict[str, Any]:
    cutoff = datetime.datetime.fromtimestamp(reaper.cutoff()).astimezone().isoformat(timespec="seconds")
    return {
        "dry_run": report.dry_run,
        "retention_days": reaper.retention_interval,
        "cutoff": cutoff,
        "generations": report.generations,
        "products": report.products,
        "payloads": report.payloads,
        "payload_bytes": report.payload_bytes,
        "batches": report.batches,
        "stopped": report.stopped,
        "per_channel": dict(sorted(report.per_taskmanager.items())),
    }


def show(summary: dict[str, Any]) -> None:
    verb = "would remove" if summary["dry_run"] else "removed"
    print(f"data older than {summary['retention_days']:g} days (before {summary['cutoff']}): {verb}")
    print(
        tabulate(
            [
                ["generations", summary["generations"]],
                ["products", summary["products"]],
                ["payloads", summary["payloads"]],
                ["payload bytes", f"{summary['payload_bytes']:,}"],
            ],
            tablefmt="plain",
        )
    )
    if summary["per_channel"]:
        print()
        print(tabulate(sorted(summary["per_channel"].items()), headers=["channel", "generations"]))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    enable_completion(parser)
    args = parser.parse_args(argv)
    config = dataspace_config(args)
    if args.dry_run:
        config = read_only(config)
    else:  # a real pass writes, but never to a database that does not exist yet
        config["dataspace"]["datasource"].setdefault("config", {})["create"] = False
    settings = config["dataspace"]
    if args.retention_days is not None:
        settings["retention_interval_in_days"] = args.retention_days
    else:  # --url: no global configuration, so the global configuration's default
        settings.setdefault("retention_interval_in_days", DEFAULT_RETENTION_INTERVAL_DAYS)
    if args.batch_size is not None:
        settings["reaper_batch_size"] = args.batch_size
    try:
        reaper = Reaper(config)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    except DataSpaceError as exc:
        raise CommandError(str(exc)) from None
    try:
        preview = reaper.reap(dry_run=True)
        if args.dry_run:
            report = preview
        else:
            report = _reap(reaper, preview.generations, show_progress=sys.stderr.isatty() and not args.no_progress)
    except DataSpaceError as exc:
        raise CommandError(str(exc)) from None
    finally:
        reaper.dataspace.close()
    summary = report_dict(report, reaper)
    if args.json:
        print_json(summary)
    else:
        show(summary)
    return 0


def _reap(reaper: Reaper, total: int, show_progress: bool) -> ReapReport:
    if not show_progress or total == 0:
        return reaper.reap()
    from rich.console import Console  # noqa: PLC0415 - only on a terminal
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn  # noqa: PLC0415

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("reaping generations", total=total)
        return reaper.reap(progress=lambda report: progress.update(task, completed=report.generations))


def console() -> None:
    sys.exit(run(main, None, PROG))


if __name__ == "__main__":
    console()
