"""The ``de-server`` command: configuration, pidfile, signals, then the engine and its web endpoint.

This module imports nothing that touches prometheus_client: the multiprocess metrics
directory must be in the environment before that library is first imported, so the
engine and the web layer are imported only once it is set.

Nothing is created (state directory, database, pidfile) before the configuration has been
checked and the listening address is known to be free: a second server started by
mistake leaves no trace.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import gc
import os
import pathlib
import shutil
import signal
import sys
from typing import Any

from decisionengine.framework.cli.common import (
    STATE_DIR_ENV,
    CommandError,
    ServerPaths,
    add_location_arguments,
    check_listening_address,
    quiet_logging,
    resolve_server_paths,
    say,
)
from decisionengine.framework.cli.extras import enable_completion
from decisionengine.framework.engine import fork_at_boot, leftovers, memory_merging, supervision
from decisionengine.framework.util.logger import get_logger
from decisionengine.framework.util.signals import on_signals
from decisionengine.framework.web.credentials import Credentials, CredentialsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="de-server",
        description="Run the decision engine: every channel of config.d, the Reaper, XML-RPC, the JSON API "
        "and metrics.",
        epilog=(
            "examples:\n"
            "  de-server                                  # /etc/decisionengine (or $CONFIG_PATH)\n"
            "  de-server --config etc/decisionengine --state-dir run\n"
            "  de-server --config /etc/de/decision_engine.jsonnet --port 9000 --pidfile /run/de.pid\n"
            "  de-server --check                          # validate the configuration, start nothing\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_location_arguments(parser)
    parser.add_argument(
        "--channels", help="channel config directory (default: $CHANNEL_CONFIG_PATH, 'channels', <config dir>/config.d)"
    )
    parser.add_argument("--host", help="address to listen on (overrides server_address)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides server_address)")
    parser.add_argument("--pidfile", help="write the server's pid here (refuses to start if it names a live process)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], type=str.upper)
    parser.add_argument("--no-reaper", action="store_true", help="do not start the Reaper thread")
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the global file and every channel file as a start would (modules imported, graphs "
        "built, parameters checked), open nothing, print one line per channel; exit 0 when all are valid",
    )
    parser.add_argument("--json", action="store_true", help="with --check: the result as JSON")
    return parser


def resolve_config(args: argparse.Namespace) -> ServerPaths:
    """The checked configuration and where everything goes; creates nothing."""
    overrides: dict[str, Any] = {}
    if args.log_level:
        overrides["log_level"] = args.log_level
    paths = resolve_server_paths(args.config, args.state_dir, channels=args.channels, **overrides)
    if args.host or args.port is not None:
        address = paths.config["server_address"]
        host, port = ("localhost", 8888) if isinstance(address, str) else address
        paths.config["server_address"] = [args.host or host, args.port if args.port is not None else port]
    if not pathlib.Path(paths.channel_dir).is_dir():
        raise RuntimeError(f"channel configuration directory {paths.channel_dir!r} does not exist")
    return paths


def _claim_pidfile(pidfile: str) -> int | None:
    """Write our pid to ``pidfile``; refuse if it names a live process.

    Returns the pid it named when that process is dead (a server that was killed), which
    is overwritten; None when there was no pidfile or it held no pid.
    """
    path = pathlib.Path(pidfile)
    dead: int | None = None
    if path.exists():
        with contextlib.suppress(ValueError, OSError):
            pid = int(path.read_text().strip())
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                dead = pid
            except PermissionError:
                raise RuntimeError(f"pidfile {pidfile} names a running process ({pid})") from None
            else:
                raise RuntimeError(f"pidfile {pidfile} names a running process ({pid}): is de-server already running?")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    return dead


def main(argv: list[str] | None = None) -> int:
    # A crash in native code (SIGSEGV, SIGBUS, SIGABRT...) writes every thread's Python stack
    # to stderr before the process dies: the one trace an operator gets of such a death.
    faulthandler.enable(all_threads=True)
    parser = build_parser()
    enable_completion(parser)
    args = parser.parse_args(argv)
    if args.json and not args.check:
        parser.error("--json goes with --check")
    if args.check:
        from decisionengine.framework.cli.config_check import run_check  # noqa: PLC0415 - imports the modules

        quiet_logging()  # stdout is the verdict; module log lines (warnings and worse) go to stderr
        return run_check(lambda: resolve_config(args), as_json=args.json)
    try:
        paths = resolve_config(args)
    except Exception as exc:
        say(f"de-server: {exc}")
        return 2
    try:
        address = paths.config["server_address"]
        if isinstance(address, str):
            check_listening_address(address.removeprefix("unix:"))
        else:
            check_listening_address((address[0], int(address[1])))
    except CommandError as exc:
        say(f"de-server: {exc}")
        return exc.status
    try:  # the secrets are read once, here: a bad token file stops the start with its name
        credentials = Credentials.from_config(paths.config.get("webserver") or {})
    except CredentialsError as exc:
        say(f"de-server: {exc}")
        return 2
    dead_server: int | None = None
    if args.pidfile:
        try:
            dead_server = _claim_pidfile(args.pidfile)
        except RuntimeError as exc:
            say(f"de-server: {exc}")
            return 1
    if paths.state_dir is not None:
        pathlib.Path(paths.state_dir).mkdir(parents=True, exist_ok=True)
        os.environ[STATE_DIR_ENV] = paths.state_dir
    config = paths.config

    # prometheus_client must see the multiprocess directory before it is first imported.
    # Named after this process, so that a server started after this one dies can remove it.
    metrics_dir = leftovers.new_metrics_directory()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    # The fork server: forked from here while this thread is the only one (the framework is
    # imported once, for both); else started anew, importing it beside this process.
    context = supervision.channel_context()
    if fork_at_boot.fork_fork_server() is None:
        supervision.warm_fork_server()

    from decisionengine.framework.engine.DecisionEngine import DecisionEngine  # noqa: PLC0415
    from decisionengine.framework.engine.logs import LogService  # noqa: PLC0415
    from decisionengine.framework.web.server import HttpServer  # noqa: PLC0415
    from decisionengine.framework.web.service import ControlService  # noqa: PLC0415

    log_service = LogService(config.get("logger", {}), context)
    log_service.start()
    logger = get_logger().bind(module="de-server")
    for warning in paths.warnings:
        logger.warning("global configuration", warning=warning)
    if dead_server is not None:
        logger.warning("replaced the pidfile of a dead server", pidfile=args.pidfile, dead_pid=dead_server)
    leftovers.report(logger, leftovers.clear_dead_metrics_directories())
    merging = memory_merging.boot_report(config)
    if merging is not None:
        logger.info(merging, host_ksm=memory_merging.host_state())
    if not supervision.parent_death_supported():
        logger.warning(
            "prctl(PR_SET_PDEATHSIG) is unavailable on this system: if de-server is killed, its channel "
            "processes end only once they see its pipe close"
        )
    engine: Any = None
    service: Any = None
    http: Any = None
    code = 0
    try:
        engine = DecisionEngine(
            config,
            paths.channel_dir,
            config_path=paths.config_file,
            log_service=log_service,
            metrics_dir=metrics_dir,
            start_reaper=not args.no_reaper,
            context=context,
        )
        # before any channel starts: a dead server's channels may have left their lock files
        leftovers.report(logger, leftovers.clear_stale_channel_locks(engine.dataspace))
        on_signals(engine.request_stop)  # SIGTERM, SIGINT: from a thread, never in the handler
        # `kill -USR1 <pid>` writes every thread's stack to stderr: what a stuck server is doing.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        service = ControlService(engine, credentials)
        http = HttpServer(service)
        engine.start()
        http.start()
        logger.info("serving", address=http.url)
        say(f"de-server: serving on {http.url} (pid {os.getpid()})")
        engine.wait()
    except RuntimeError as exc:  # a problem the message explains (missing directory...)
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
        if http is not None:
            http.stop()
        if service is not None:
            service.close()  # after the HTTP server: no request can start a query any more
        log_service.stop()
        if args.pidfile:
            with contextlib.suppress(OSError):
                pathlib.Path(args.pidfile).unlink()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return code


def console() -> None:
    code = main()
    # Everything is stopped and cleaned up.  Spare the interpreter's final garbage collection
    # over the whole heap (more than a second for a server that has run a while): a standby
    # waits for our locks, a supervisor for our exit.  Frozen objects are not collected;
    # atexit handlers (multiprocessing's finalizers) still run.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console()
