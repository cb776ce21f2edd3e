"""The ``de-server`` command: configuration, pidfile, signals, then the DecisionEngine.

This module imports nothing that touches prometheus_client: the multiprocess metrics
directory must be in the environment before that library is first imported, so the
server class is imported only once it is set.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import shutil
import signal
import sys
import tempfile
from typing import Any

from decisionengine.framework.config import policies
from decisionengine.framework.config.global_config import validate_global_config
from decisionengine.framework.config.ValidConfig import ValidConfig

STATE_DIR_ENV = "DE_STATE_DIR"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="de-server",
        description="Run the decision engine: every channel of config.d, the Reaper, XML-RPC and metrics.",
        epilog=(
            "examples:\n"
            "  de-server                                  # /etc/decisionengine (or $CONFIG_PATH)\n"
            "  de-server --config etc/decisionengine --state-dir run\n"
            "  de-server --config /etc/de/decision_engine.jsonnet --port 9000 --pidfile /run/de.pid\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", "-c", help="global config file or the directory holding decision_engine.jsonnet")
    parser.add_argument(
        "--channels", help="channel config directory (default: $CHANNEL_CONFIG_PATH, 'channels', <config dir>/config.d)"
    )
    parser.add_argument("--host", help="address to listen on (overrides server_address)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides server_address)")
    parser.add_argument(
        "--state-dir",
        help="directory for the default SQLite dataspace, logs and the demo's output (when the config sets none)",
    )
    parser.add_argument("--pidfile", help="write the server's pid here (refuses to start if it names a live process)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], type=str.upper)
    parser.add_argument("--no-reaper", action="store_true", help="do not start the Reaper thread")
    return parser


def resolve_config(args: argparse.Namespace) -> tuple[dict[str, Any], list[str], str, str]:
    """(global config with defaults, warnings, config file path, channel dir)."""

    if args.config:
        path = pathlib.Path(args.config)
        if path.is_dir():
            path = path / policies.GLOBAL_CONFIG_FILENAME
    else:
        path = pathlib.Path(policies.global_config_file())
    path = path.resolve()
    raw = ValidConfig(path).to_dict()
    base = path.parent
    state_dir = pathlib.Path(args.state_dir).resolve() if args.state_dir else None
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        datasource = raw.setdefault("dataspace", {}).setdefault("datasource", {}).setdefault("config", {})
        datasource.setdefault("url", f"sqlite:///{state_dir / 'dataspace.sqlite'}")
        raw.setdefault("logger", {}).setdefault("log_file", str(state_dir / "logs" / "decision_engine.log"))
        os.environ[STATE_DIR_ENV] = str(state_dir)
    logger = raw.get("logger")
    if isinstance(logger, dict) and logger.get("log_file"):
        logger["log_file"] = str((base / logger["log_file"]).resolve())
    if args.log_level:
        raw.setdefault("logger", {})["log_level"] = args.log_level
    address = raw.get("server_address") or ["localhost", 8888]
    if args.host or args.port is not None:
        raw["server_address"] = [args.host or address[0], args.port if args.port is not None else address[1]]
    config, warnings = validate_global_config(raw, str(path))
    if args.channels:
        channel_dir = str(pathlib.Path(args.channels).resolve())
    elif os.environ.get(policies.CHANNEL_CONFIG_PATH_ENV):
        channel_dir = policies.channel_config_dir(config)
    elif config.get("channels"):
        channel_dir = str((base / config["channels"]).resolve())
    else:
        channel_dir = str(base / policies.CHANNEL_SUBDIR)
    if not pathlib.Path(channel_dir).is_dir():
        raise RuntimeError(f"channel configuration directory {channel_dir!r} does not exist")
    return config, warnings, str(path), channel_dir


def say(line: str) -> None:
    """One line on stderr, written at once: log lines from other threads never split it."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _claim_pidfile(pidfile: str) -> None:
    path = pathlib.Path(pidfile)
    if path.exists():
        with contextlib.suppress(ValueError, OSError):
            pid = int(path.read_text().strip())
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pass
            except PermissionError:
                raise RuntimeError(f"pidfile {pidfile} names a running process ({pid})") from None
            else:
                raise RuntimeError(f"pidfile {pidfile} names a running process ({pid}): is de-server already running?")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config, warnings, config_path, channel_dir = resolve_config(args)
    except Exception as exc:
        say(f"de-server: {exc}")
        return 2
    if args.pidfile:
        try:
            _claim_pidfile(args.pidfile)
        except RuntimeError as exc:
            say(f"de-server: {exc}")
            return 1

    # prometheus_client must see the multiprocess directory before it is first imported.
    metrics_dir = tempfile.mkdtemp(prefix="de-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    from decisionengine.framework.engine.DecisionEngine import DecisionEngine, channel_context  # noqa: PLC0415 - see doc
    from decisionengine.framework.engine.logs import LogService  # noqa: PLC0415

    context = channel_context()
    log_service = LogService(config.get("logger", {}), context)
    log_service.start()
    import structlog  # noqa: PLC0415

    logger = structlog.get_logger("decisionengine").bind(module="de-server")
    for warning in warnings:
        logger.warning("global configuration", warning=warning)
    engine: Any = None
    code = 0
    try:
        engine = DecisionEngine(
            config,
            channel_dir,
            config_path=config_path,
            log_service=log_service,
            metrics_dir=metrics_dir,
            start_reaper=not args.no_reaper,
            context=context,
        )
        signal.signal(signal.SIGTERM, lambda *_: engine.request_stop())
        signal.signal(signal.SIGINT, lambda *_: engine.request_stop())
        engine.start()
        say(f"de-server: serving on http://{engine.http.address[0]}:{engine.http.address[1]} (pid {os.getpid()})")
        engine.wait()
    except RuntimeError as exc:  # a problem the message explains (address in use, missing directory...)
        logger.error("de-server cannot run", error=str(exc))
        say(f"de-server: {exc}")
        code = 1
    except Exception as exc:
        logger.exception("de-server failed", error=f"{type(exc).__name__}: {exc}")
        say(f"de-server: {type(exc).__name__}: {exc}")
        code = 1
    finally:
        if engine is not None:
            engine.shutdown()
        log_service.stop()
        if args.pidfile:
            with contextlib.suppress(OSError):
                pathlib.Path(args.pidfile).unlink()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
