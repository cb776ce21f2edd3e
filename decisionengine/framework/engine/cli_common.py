"""What the three operator commands share: finding the configuration, parsing times,
printing JSON, terminal width and shell completion."""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import sys
from typing import Any

from decisionengine.framework.config.global_config import load_global_config
from decisionengine.framework.engine.formatting import to_jsonable

DEFAULT_ADDRESS = ("localhost", 8888)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class CommandError(Exception):
    """A problem to report in one line, with an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def load_config(path: str | None) -> dict[str, Any]:
    """The global configuration from ``path`` (file or directory) or the policy location."""
    try:
        config, _warnings = load_global_config(path)
    except FileNotFoundError as exc:
        raise CommandError(f"no global configuration: {exc}", 2) from None
    except Exception as exc:
        raise CommandError(str(exc), 2) from None
    return config


def server_address(config_path: str | None) -> tuple[str, int]:
    """The server's address from the global configuration when it can be read, else localhost:8888."""
    try:
        config, _warnings = load_global_config(config_path)
    except Exception:
        if config_path:  # the operator named a file: say what is wrong with it
            raise
        return DEFAULT_ADDRESS
    host, port = config.get("server_address", DEFAULT_ADDRESS)
    return host, int(port)


def dataspace_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A parser for a command that reads a DataSpace: from the global configuration or a URL."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="global configuration file or directory (default: $CONFIG_PATH)")
    source.add_argument("--url", help="DataSpace database URL, instead of a configuration")
    return parser


def dataspace_config(args: argparse.Namespace) -> dict[str, Any]:
    """A configuration for DataSpace(): the global file's, or just ``--url``."""
    if getattr(args, "url", None):
        return {
            "dataspace": {
                "datasource": {
                    "module": "decisionengine.framework.dataspace.datasources.sqlalchemy_ds",
                    "name": "SQLAlchemyDS",
                    "config": {"url": args.url},
                }
            }
        }
    return load_config(args.config)


def parse_time(text: str, now: float | None = None) -> float:
    """Epoch seconds from ``2h``/``30m``/``45s``/``3d``/``1w`` ago or an ISO time (local if naive)."""
    now = datetime.datetime.now().timestamp() if now is None else now
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use a duration such as 30m, 2h, 3d, or an ISO time such as 2026-11-01T12:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def print_json(value: Any) -> None:
    print(json.dumps(to_jsonable(value), indent=2))


def terminal_width() -> int:
    return shutil.get_terminal_size((120, 40)).columns


def enable_completion(parser: argparse.ArgumentParser) -> None:
    """Shell completion through argcomplete (``eval "$(register-python-argcomplete de-client)"``)."""
    try:
        import argcomplete  # noqa: PLC0415 - optional at run time

        argcomplete.autocomplete(parser)
    except ImportError:  # pragma: no cover - argcomplete is a dependency
        pass


def quiet_logging() -> None:
    """Library log lines (warnings and worse only) go to stderr: stdout is the command's output."""
    import logging  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )


def run(main: Any, argv: list[str] | None, prog: str) -> int:
    """Run a command's main, turning CommandError into one line on stderr and its status."""
    quiet_logging()
    try:
        return main(argv)
    except CommandError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return exc.status
    except KeyboardInterrupt:
        return 130
