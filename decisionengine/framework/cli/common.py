"""What the command-line tools share: finding the configuration and the state directory
the way ``de-server`` does, parsing times, printing JSON, closed pipes, shell completion."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import pathlib
import shutil
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from decisionengine.framework.config import policies
from decisionengine.framework.config.global_config import load_global_config, validate_global_config
from decisionengine.framework.config.ValidConfig import ValidConfig
from decisionengine.framework.util.times import parse_time as _parse_time

DEFAULT_ADDRESS = ("localhost", 8888)
STATE_DIR_ENV = "DE_STATE_DIR"
SQLITE_FILE = "dataspace.sqlite"


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


def check_listening_address(address: tuple[str, int] | str) -> None:
    """Fail with a clear message if ``de-server`` could not listen on ``address`` ((host,
    port), or a Unix socket's path).

    CherryPy ends the whole process (exit status 70) when its server cannot bind, so the
    server checks first, before it creates anything or starts any channel.  A Unix socket
    left by a server that died is removed; one a live server answers on is an error.
    """
    if isinstance(address, str):
        _check_socket_file(pathlib.Path(address))
        return
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CommandError(f"server_address {host!r} does not resolve: {exc}", 2) from None
    family, kind, proto, _, where = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(where)
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {host}:{port}: {exc.strerror} "
                "(is another de-server running? set server_address or --port)"
            ) from None


def _check_socket_file(path: pathlib.Path) -> None:
    if not path.parent.is_dir():
        raise CommandError(f"server_address: the directory of the Unix socket {path} does not exist", 2)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_socket():
        raise CommandError(f"server_address: {path} exists and is not a socket; not touching it", 2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody answers: what a dead server left behind
            return
    raise CommandError(f"cannot listen on {path}: a server answers there (is another de-server running?)")


# -- where the configuration and the state are ------------------------------------------------


def add_location_arguments(parser: argparse.ArgumentParser | Any, config_group: Any = None) -> None:
    """``--config`` and ``--state-dir``, with the meaning ``de-server`` gives them."""
    (config_group or parser).add_argument(
        "--config", "-c", help="global config file, or the directory holding decision_engine.jsonnet ($CONFIG_PATH)"
    )
    parser.add_argument(
        "--state-dir",
        default=os.environ.get(STATE_DIR_ENV) or None,
        help=f"directory of the default SQLite dataspace, the logs and the demo's output "
        f"when the configuration names none (default: ${STATE_DIR_ENV})",
    )


@dataclass
class ServerPaths:
    """A global configuration, checked and completed, and where its files are."""

    config: dict[str, Any]
    config_file: str
    channel_dir: str
    state_dir: str | None = None
    warnings: list[str] = field(default_factory=list)


def resolve_server_paths(
    config: str | None, state_dir: str | None, channels: str | None = None, log_level: str | None = None
) -> ServerPaths:
    """Read the global configuration as ``de-server`` does; creates nothing.

    ``state_dir`` supplies defaults the file leaves out (the SQLite dataspace in it, the
    log file under ``logs/``); relative paths in the file are relative to the file.
    """
    if config:
        path = pathlib.Path(config)
        if path.is_dir():
            path = path / policies.GLOBAL_CONFIG_FILENAME
    else:
        path = pathlib.Path(policies.global_config_file())
    path = path.resolve()
    raw = ValidConfig(path).to_dict()
    base = path.parent
    state = pathlib.Path(state_dir).resolve() if state_dir else None
    if state is not None:
        dataspace = raw.setdefault("dataspace", {})
        if isinstance(dataspace, dict):
            datasource = dataspace.setdefault("datasource", {})
            if isinstance(datasource, dict):
                settings = datasource.setdefault("config", {})
                if isinstance(settings, dict):
                    settings.setdefault("url", f"sqlite:///{state / SQLITE_FILE}")
        logger = raw.setdefault("logger", {})
        if isinstance(logger, dict):
            logger.setdefault("log_file", str(state / "logs" / "decision_engine.log"))
    if log_level:
        logger = raw.setdefault("logger", {})
        if isinstance(logger, dict):
            logger["log_level"] = log_level
    checked, warnings = validate_global_config(raw, str(path))
    logger = checked.get("logger") or {}
    if logger.get("log_file"):
        logger["log_file"] = str((base / logger["log_file"]).resolve())
    if channels:
        channel_dir = str(pathlib.Path(channels).resolve())
    elif os.environ.get(policies.CHANNEL_CONFIG_PATH_ENV):
        channel_dir = str(policies.channel_config_dir(checked))
    elif checked.get("channels"):
        channel_dir = str((base / checked["channels"]).resolve())
    else:
        channel_dir = str(base / policies.CHANNEL_SUBDIR)
    return ServerPaths(checked, str(path), channel_dir, str(state) if state else None, warnings)


def dataspace_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A parser for a command that reads a DataSpace: the server's configuration, or a URL."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_argument_group("which DataSpace (default: the one de-server would use)")
    exclusive = where.add_mutually_exclusive_group()
    add_location_arguments(where, exclusive)
    exclusive.add_argument("--url", help="DataSpace database URL, instead of the configuration")
    return parser


def dataspace_config(args: argparse.Namespace) -> dict[str, Any]:
    """A configuration for DataSpace(): just ``--url``, or the server's (``--config``/``--state-dir``)."""
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
    try:
        return resolve_server_paths(args.config, args.state_dir).config
    except FileNotFoundError as exc:
        raise CommandError(f"no global configuration: {exc}", 2) from None
    except Exception as exc:
        raise CommandError(str(exc), 2) from None


def read_only(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` for a reader that must change nothing: the database must exist, and is
    opened read-only (a mistyped SQLite path is an error naming it, not a new database)."""
    settings = config.setdefault("dataspace", {}).setdefault("datasource", {}).setdefault("config", {})
    settings["read_only"] = True
    return config


def parse_time(text: str, now: float | None = None) -> float:
    """Epoch seconds from ``2h``/``30m``/``45s``/``3d``/``1w`` ago or an ISO time, for argparse."""
    try:
        return _parse_time(text, now)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def print_json(value: Any) -> None:
    # imported here: it brings pandas, which a command printing plain data does not need
    from decisionengine.framework.web.presentation import to_jsonable  # noqa: PLC0415

    print(json.dumps(to_jsonable(value), indent=2))


def terminal_width() -> int:
    return shutil.get_terminal_size((120, 40)).columns


def quiet_logging() -> None:
    """Library log lines (warnings and worse only) go to stderr: stdout is the command's output."""
    import logging  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )


def say(line: str) -> None:
    """One line on stderr, written at once: log lines from other threads never split it."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run(main: Any, argv: list[str] | None, prog: str) -> int:
    """Run a command's main: CommandError becomes one line on stderr and its status; a
    reader that goes away (``| head``) ends the command quietly."""
    quiet_logging()
    try:
        status = main(argv)
        sys.stdout.flush()
        return status
    except CommandError as exc:
        say(f"{prog}: {exc}")
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            return _closed_pipe()
        raise


def _closed_pipe() -> int:
    """stdout's reader is gone: point stdout at /dev/null so the interpreter's final flush
    cannot fail again, and exit as a pipeline expects."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe


def console(main: Any, prog: str) -> None:
    """The console-script entry point of a command."""
    sys.exit(run(main, None, prog))
