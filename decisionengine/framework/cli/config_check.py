"""``de-server --check``: is this configuration one the server would start with?

As ``nginx -t`` or ``promtool check config`` do, the check goes through the same steps as a
start, on the same code: the global file is read and validated (and the token files it
names are read), the channel directory is listed, and every channel file is read and
prepared exactly as its channel process prepares it (:func:`prepare_channel`: modules
imported, each module built once, the product graph and the parameters checked, the
``task_manager`` block read).  It opens nothing else: no database, no listening socket, no
log file, no pidfile.  So systemd can run it as ``ExecStartPre``: a broken change is
refused before the running server is stopped for a restart that would not come back.

Module code runs in this process (the server runs it in each channel's own process): a
module whose constructor raises or calls ``sys.exit`` makes its channel invalid here too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from decisionengine.framework.cli.common import ServerPaths
from decisionengine.framework.config.channels import read_channels
from decisionengine.framework.config.errors import ConfigError
from decisionengine.framework.config.shared_sources import split_conflicting
from decisionengine.framework.taskmanager.prepare import prepare_channel
from decisionengine.framework.web.credentials import Credentials


@dataclass
class Verdict:
    """What the check found for one file: the global file (``name`` "global") or a channel."""

    name: str
    file: str | None
    ok: bool
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    config_file: str | None
    channel_dir: str | None
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.verdicts) and all(v.ok for v in self.verdicts)

    @property
    def channels(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.name != "global"]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "config_file": self.config_file,
            "channel_dir": self.channel_dir,
            "global": asdict(self.verdicts[0]) if self.verdicts else None,
            "channels": [asdict(v) for v in self.channels],
        }


def one_line(exc: BaseException) -> str:
    """An error as one line: a file's several problems joined with ``; ``."""
    if isinstance(exc, ConfigError) and exc.problems:
        where = f"{exc.path}: " if exc.path else ""
        return where + "; ".join(p.strip() for p in exc.problems)
    text = str(exc) if str(exc) else type(exc).__name__
    return "; ".join(part.strip(" -") for part in text.splitlines() if part.strip())


def check_configuration(resolve: Callable[[], ServerPaths]) -> CheckReport:
    """Check everything a start checks; ``resolve`` reads the global file as the start does."""
    try:
        paths = resolve()
        Credentials.from_config(paths.config.get("webserver") or {})  # token files, as a start reads them
    except Exception as exc:
        report = CheckReport(None, None)
        report.verdicts.append(Verdict("global", None, False, one_line(exc)))
        return report
    report = CheckReport(paths.config_file, paths.channel_dir)
    report.verdicts.append(Verdict("global", paths.config_file, True, warnings=list(paths.warnings)))
    configs, failures = read_channels(paths.channel_dir)
    verdicts = [Verdict(f.name, f.path, False, one_line(RuntimeError(f.reason))) for f in failures.values()]
    # as a start: a channel naming a source another channel configures differently is refused
    accepted, conflicting = split_conflicting(configs)
    for name, conflicts in conflicting.items():
        verdicts.append(Verdict(name, configs[name].path, False, "; ".join(str(c) for c in conflicts)))
    for name, config in accepted.items():
        try:
            plan, settings = prepare_channel(config, paths.config)
        except (Exception, SystemExit) as exc:  # a module may call sys.exit() in its constructor
            verdicts.append(Verdict(name, config.path, False, one_line(exc), list(config.warnings)))
            continue
        verdicts.append(Verdict(name, config.path, True, warnings=[*plan.warnings, *settings.warnings]))
    report.verdicts.extend(sorted(verdicts, key=lambda v: v.name))
    return report


def render(report: CheckReport) -> str:
    """One line per file (``ok`` or the error), warnings indented under it, a summary last."""
    lines = []
    width = max((len(v.name) for v in report.verdicts), default=6)
    for verdict in report.verdicts:
        where = f"  {verdict.file}" if verdict.file else ""
        if verdict.ok:
            lines.append(f"{verdict.name:<{width}}  ok{where}")
        else:
            lines.append(f"{verdict.name:<{width}}  error: {verdict.error}")
        lines.extend(f"{'':<{width}}  warning: {w}" for w in verdict.warnings)
    channels = report.channels
    bad = sum(not v.ok for v in channels)
    if not report.verdicts or not report.verdicts[0].ok:
        lines.append("configuration invalid: the global file cannot be used")
    elif not channels:
        lines.append(f"configuration valid: no channel files in {report.channel_dir}")
    elif bad:
        lines.append(f"configuration invalid: {bad} of {len(channels)} channels cannot run")
    else:
        lines.append(f"configuration valid: {len(channels)} channel{'s' if len(channels) != 1 else ''}")
    return "\n".join(lines)


def run_check(resolve: Callable[[], ServerPaths], as_json: bool = False) -> int:
    """Print the check's result; 0 when everything is valid, 1 otherwise."""
    report = check_configuration(resolve)
    print(json.dumps(report.to_json(), indent=2) if as_json else render(report), flush=True)
    return 0 if report.ok else 1
