"""``de-client``: the operator's command line for a running de-server (XML-RPC).

A thin client: every option is one server method, and all state lives in the server.
Output is a table for people and JSON with ``--json`` for scripts.  A server that is not
running, or a method that fails, is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import time
import urllib.parse
import xmlrpc.client
from collections.abc import Callable
from typing import Any

from tabulate import tabulate

from decisionengine.framework.cli import sse_client
from decisionengine.framework.cli.common import (
    CommandError,
    print_json,
    terminal_width,
)
from decisionengine.framework.cli.common import (
    console as run_console,
)
from decisionengine.framework.cli.connection import (
    TOKEN_ENV,
    ConnectionSetupError,
    ServerLocation,
    normalize_url,
    token_from,
    url_from_config,
)
from decisionengine.framework.cli.extras import enable_completion
from decisionengine.framework.config.global_config import load_global_config
from decisionengine.framework.taskmanager.states import State

PROG = "de-client"
EPILOG = """examples:
  de-client --status                          state of every channel
  de-client --health                          one line; exit 0 fine, 1 a channel failing, 2 no server
  de-client --status --json | jq '.channels[].state'
  de-client --print-product demand --columns vo,idle_cpus --query "idle_cpus > 0"
  de-client --print-product figure_of_merit --format csv > fom.csv
  de-client --print-product demand --types    each column's value types
  de-client --queue-status                    deliveries waiting for the next generation
  de-client --set-source-loglevel jobs DEBUG  one source's lines at DEBUG (--channel CH for one channel)
  de-client --stop-channel demo && de-client --start-channel demo
  de-client --block-while BOOT --timeout 60   wait until every channel has booted
  de-client --follow demo                     print each new generation as it lands
  de-client --drain --timeout 300             hand this server's channels to the others, wait until none is left
  de-client --cluster                         the servers sharing the DataSpace and their channels
  de-client --set-channel-loglevel demo DEBUG

The server is --url (http://host:port, https://host:port, unix:/path), else --host/--port,
else the global configuration's server_address ($CONFIG_PATH or /etc/decisionengine), else
http://localhost:8888.  The API token (needed for control when the server has one) comes
from --token-file, else $DE_API_TOKEN, else the configuration's webserver.api_token_file.
Completion: eval "$(register-python-argcomplete de-client)"
"""


class Client:
    """Calls server methods, turning transport problems and faults into one-line errors
    (``verbose``: with a second line saying which call failed and the exception, as the
    reference's ``-v``)."""

    def __init__(self, location: ServerLocation, verbose: bool = False) -> None:
        self.location = location
        self.url = location.display
        self.proxy = location.xmlrpc_proxy()
        self.verbose = verbose

    def call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.proxy, method)(*args)
        except xmlrpc.client.Fault as fault:
            raise self._error(fault.faultString, method, args, fault) from None
        except xmlrpc.client.ProtocolError as exc:
            message = f"the decision engine at {self.url} answered {exc.errcode} {exc.errmsg}"
            raise self._error(message, method, args, exc) from None
        except ssl.SSLError as exc:
            message = f"cannot reach the decision engine at {self.url}: TLS: {exc.reason or exc}"
            raise self._error(message, method, args, exc) from None
        except (TimeoutError, ConnectionError, socket.gaierror, http.client.HTTPException, OSError) as exc:
            message = f"cannot reach the decision engine at {self.url}: {_reason(exc)}"
            raise self._error(message, method, args, exc) from None

    def _error(self, message: str, method: str, args: tuple[Any, ...], exc: BaseException) -> CommandError:
        if not self.verbose:
            return CommandError(message)
        call = f"{method}({', '.join(map(repr, args))})"
        if isinstance(exc, xmlrpc.client.Fault):
            detail = f"XML-RPC fault {exc.faultCode}"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        return CommandError(f"{message}\n  calling {call} at {self.url}: {detail}")

    def wait_until_reachable(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.call("ping")
                return
            except CommandError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is de-server running?)"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


# -- rendering ------------------------------------------------------------------------------


def render_product(document: dict[str, Any], vertical_view: bool, width: int) -> str:
    """A product from the server's JSON form, fitted to the terminal."""
    value = document["value"]
    title = f"channel {document['channel']}, generation {document['generation']}, product {document['product']}:"
    if isinstance(value, list) and not value:
        return f"{title}\n(no rows)"  # an empty frame, or a query that matched nothing
    if isinstance(value, list) and all(isinstance(row, dict) for row in value):
        # a thin client: pandas only to lay out a product's rows, not at every start
        import pandas as pd  # noqa: PLC0415

        from decisionengine.framework.web.presentation import vertical  # noqa: PLC0415

        frame = pd.DataFrame(value)
        index = document.get("index")
        if isinstance(index, list) and len(index) == len(frame):
            # the product's own row labels (kept through --query and --columns), never 0, 1, 2...
            labels = [tuple(label) if isinstance(label, list) else label for label in index]
            names = document.get("index_names") or [None]
            frame.index = (
                pd.MultiIndex.from_tuples(labels, names=names)
                if len(names) > 1 and all(isinstance(label, tuple) for label in labels)
                else pd.Index(labels, name=names[0])
            )
        if vertical_view:
            return f"{title}\n{vertical(frame)}"
        table = tabulate(frame, headers="keys", tablefmt="psql", showindex=True, missingval="")
        if max(len(line) for line in table.splitlines()) <= width:
            return f"{title}\n{table}"
        # Wider than the terminal: let pandas wrap the columns into blocks that fit.
        return f"{title}\n{frame.to_string(line_width=width)}"
    return f"{title}\n{json.dumps(value, indent=2)}"


def render_columns(document: dict[str, Any]) -> str:
    """A DataFrame product's columns (and, with ``--types``, each one's value types)."""
    value = document["value"]
    title = f"channel {document['channel']}, generation {document['generation']}, product {document['product']}:"
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        return f"{title}\n(not a DataFrame: {type(value).__name__})"
    columns = list(dict.fromkeys(key for row in value for key in row))
    typed = [c for c in columns if f"{c}.type" in columns]
    if typed:
        rows = [[c, ", ".join(sorted({str(row.get(f"{c}.type")) for row in value}))] for c in typed]
        return f"{title}\n{tabulate(rows, headers=['column', 'types'], tablefmt='psql')}"
    return f"{title}\n{tabulate([[c] for c in columns], headers=['column'], tablefmt='psql')}"


# -- the command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Ask a running decision engine (de-server) questions and give it orders.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_argument_group("server")
    where.add_argument(
        "--url",
        help="the server: http://host:port, https://host:port or unix:/path/to/socket "
        "(default: the global configuration's server_address, else http://localhost:8888)",
    )
    where.add_argument("--host", help="server host (instead of --url; default: from the global configuration)")
    where.add_argument("--port", type=int, help="server port (instead of --url; default: from the configuration)")
    where.add_argument(
        "--config", help="global configuration file or directory to read server_address (and the token file) from"
    )
    where.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"file holding the API token (default: ${TOKEN_ENV}, else the configuration's webserver.api_token_file)",
    )
    where.add_argument("--ca-file", metavar="FILE", help="certificate authority to check an https server with")
    where.add_argument(
        "--wait", type=float, default=0, metavar="SECONDS", help="wait up to SECONDS for the server to answer"
    )
    where.add_argument(
        "--rpc-timeout", type=float, default=None, metavar="SECONDS", help="give up on a call after SECONDS"
    )
    where.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="on an error, also print the call that failed and the exception (the server's fault code, or why "
        "the connection failed)",
    )

    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="JSON output, for scripts")
    out.add_argument(
        "--format",
        choices=["table", "csv", "json", "vertical", "column-names"],
        default="table",
        type=str.lower,
        help="how to print a product (vertical: as --vertical; column-names: only the columns and their types)",
    )
    out.add_argument("--vertical", action="store_true", help="one block per row (for wide DataFrames)")
    out.add_argument(
        "--types", action="store_true", help="with --print-product: a <column>.type column after each column"
    )
    out.add_argument("--columns", help="comma-separated columns of a DataFrame product")
    out.add_argument(
        "--query",
        help="rows of a DataFrame product, e.g. \"cores > 4 and site == 'A'\" (columns, literals, comparisons, "
        "and/or/not, the allowed methods; README: Client queries)",
    )
    out.add_argument(
        "--channel",
        help="channel to take --print-product from (default: the first that has it), or to set or get a "
        "source's log level in (default: every channel with that source)",
    )
    out.add_argument("--max-rows", type=int, default=None, metavar="N", help="rows of DataFrames to show")
    out.add_argument(
        "--all",
        action="store_true",
        dest="include_stopped",
        help="with --print-products: also the stored products of channels that are not active",
    )
    out.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="for --block-while and --drain (default: wait as long as it takes) and --kill-channel (default: the "
        "server's shutdown_timeout)",
    )
    out.add_argument("-f", "--force", action="store_true", help="with --kill-channel: kill at once (--timeout 0)")
    out.add_argument(
        "--reaper-start-delay-secs",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --reaper-start: its first pass after SECONDS (as --reaper-start SECONDS)",
    )

    # Not required=True: argparse would then answer an unknown option with "one of the
    # arguments ... is required" instead of naming it; main() checks that one was given.
    actions = parser.add_argument_group("actions (one per call)").add_mutually_exclusive_group()
    actions.add_argument("--status", action="store_true", help="every channel: state, generation, sources, errors")
    actions.add_argument(
        "--health",
        action="store_true",
        help="one line for monitoring; exit 0 all channels fine, 1 a channel in ERROR or not running, "
        "2 server unreachable",
    )
    actions.add_argument(
        "--print-products",
        action="store_true",
        help="the latest products of every active channel, each with the module that produced it",
    )
    actions.add_argument("--print-product", metavar="PRODUCT", help="one product of the latest generation")
    actions.add_argument("--start-channel", metavar="CHANNEL", help="start (or restart) a channel")
    actions.add_argument("--stop-channel", metavar="CHANNEL", help="stop a channel")
    actions.add_argument("--start-channels", action="store_true", help="start every channel that is not running")
    actions.add_argument("--stop-channels", action="store_true", help="stop every channel")
    actions.add_argument("--rm-channel", metavar="CHANNEL", help="stop a channel and forget it until restart")
    actions.add_argument("--kill-channel", metavar="CHANNEL", help="stop a channel, killing it after --timeout")
    actions.add_argument(
        "--reaper-start",
        nargs="?",
        const=0.0,
        type=float,
        metavar="DELAY",
        help="start the Reaper (first pass after DELAY seconds)",
    )
    actions.add_argument("--reaper-stop", action="store_true", help="stop the Reaper")
    actions.add_argument("--reaper-status", action="store_true", help="the Reaper's state and last pass")
    actions.add_argument("--print-engine-loglevel", action="store_true", help="the server's log level")
    actions.add_argument("--set-engine-loglevel", metavar="LEVEL", help="set the server's log level")
    actions.add_argument("--get-channel-loglevel", metavar="CHANNEL", help="a channel's log level")
    actions.add_argument(
        "--set-channel-loglevel", nargs=2, metavar=("CHANNEL", "LEVEL"), help="set a channel's log level"
    )
    actions.add_argument(
        "--get-source-loglevel",
        metavar="SOURCE",
        help="the log level of a source's lines (its own, else its channel's), in every channel with it or --channel",
    )
    actions.add_argument(
        "--set-source-loglevel",
        nargs=2,
        metavar=("SOURCE", "LEVEL"),
        help="give a source a log level of its own (NOTSET: its channel's again), in every channel with it or "
        "--channel",
    )
    actions.add_argument(
        "--queue-status",
        action="store_true",
        help="per source: a delivery waiting for the next generation; per channel: messages not yet sent to the "
        "server (what stands in for the reference's queues)",
    )
    actions.add_argument(
        "--drain",
        action="store_true",
        help="hand this server's channels to the other servers of the cluster and wait until none runs here",
    )
    actions.add_argument("--undrain", action="store_true", help="end a drain: this server takes channels again")
    actions.add_argument(
        "--cluster", action="store_true", help="the servers sharing the DataSpace, and the channels each holds"
    )
    actions.add_argument(
        "--block-while",
        metavar="STATE",
        type=str.upper,
        choices=[s.name for s in State],
        help="wait until no channel is in STATE (with --timeout for all of them)",
    )
    actions.add_argument("--follow", metavar="CHANNEL", help="print each new generation of a channel as it lands")
    actions.add_argument("--product-dependencies", action="store_true", help="producer and consumers of every product")
    actions.add_argument("--show-config", nargs="?", const="all", metavar="CHANNEL", help="channel configuration(s)")
    actions.add_argument("--show-channel-config", metavar="CHANNEL", help="one channel's configuration")
    actions.add_argument("--show-de-config", action="store_true", help="the server's global configuration")
    actions.add_argument("--metrics", action="store_true", help="Prometheus metrics")
    actions.add_argument("--list-rpc-methods", action="store_true", help="the server's methods")
    actions.add_argument("--ping", action="store_true", help="is the server there?")
    actions.add_argument("--stop", action="store_true", help="stop the server (and every channel)")
    return parser


def _plain(client: Client, args: argparse.Namespace, method: str, *params: Any) -> int:
    """A method answering with a message: printed, or wrapped as JSON."""
    result = client.call(method, *params)
    if args.json:
        print_json({"method": method, "result": result})
    else:
        print(result.rstrip("\n") if isinstance(result, str) else result)
    return 0


def _formatted(client: Client, args: argparse.Namespace, method: str, *params: Any) -> int:
    """A method taking a format: the server's table, or its JSON parsed and re-printed."""
    if args.json:
        print_json(json.loads(client.call(method, *params, "json")))
    else:
        print(
            client.call(method, *params, "vertical" if args.vertical and method == "print_products" else "table"),
            end="",
        )
    return 0


def _print_products(client: Client, args: argparse.Namespace) -> int:
    rows = 50 if args.max_rows is None else args.max_rows
    if args.json:
        print_json(json.loads(client.call("print_products", "json", rows, args.include_stopped)))
    else:
        fmt = "vertical" if args.vertical else "table"
        print(client.call("print_products", fmt, rows, args.include_stopped), end="")
    return 0


def _print_product(client: Client, args: argparse.Namespace) -> int:
    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    params = (args.print_product, columns, args.query, args.types)
    if args.json or args.format == "json":
        print_json(json.loads(client.call("get_product", *params, "json", args.channel, args.max_rows)))
    elif args.format == "csv":
        print(client.call("get_product", *params, "csv", args.channel, args.max_rows), end="")
    else:
        document = json.loads(client.call("get_product", *params, "json", args.channel, args.max_rows))
        if args.format == "column-names":
            print(render_columns(document))
        else:
            print(render_product(document, args.vertical or args.format == "vertical", terminal_width()))
    return 0


def _reaper_start(client: Client, args: argparse.Namespace) -> int:
    delay = args.reaper_start
    if args.reaper_start_delay_secs is not None:
        if delay not in (0.0, args.reaper_start_delay_secs):
            raise CommandError("give the delay once: --reaper-start DELAY or --reaper-start-delay-secs DELAY", 2)
        delay = args.reaper_start_delay_secs
    return _plain(client, args, "reaper_start", delay)


def _kill_channel(client: Client, args: argparse.Namespace) -> int:
    timeout = 0 if args.force else args.timeout
    return _plain(client, args, "kill_channel", args.kill_channel, timeout)


def _source_loglevel(client: Client, args: argparse.Namespace) -> int:
    levels = json.loads(client.call("get_source_log_level", args.get_source_loglevel, args.channel, "json"))
    if args.json:
        print_json({"source": args.get_source_loglevel, "levels": levels})
    else:
        print(
            tabulate([[c, args.get_source_loglevel, lvl] for c, lvl in levels.items()], ["channel", "source", "level"])
        )
    return 0


def _queue_status(client: Client, args: argparse.Namespace) -> int:
    if args.json:
        print_json(json.loads(client.call("queue_status", "json")))
    else:
        print(client.call("queue_status", "table"), end="")
    return 0


def _block_while(client: Client, args: argparse.Namespace) -> int:
    answer = json.loads(client.call("block_while", args.block_while, args.timeout, "json"))
    if args.json:
        print_json(answer)
    elif answer["timed_out"]:
        print(f"timed out after {args.timeout:g} s; still {answer['state']}: {', '.join(answer['channels'])}")
    else:
        print(f"no channel is {answer['state']}")
    return 1 if answer["timed_out"] else 0


def _drain(client: Client, args: argparse.Namespace) -> int:
    """Start the drain, then report each change until no channel runs here (exit 0), no other
    server can take what is left (exit 1), or --timeout passes (exit 1)."""
    answer = json.loads(client.call("drain", "json"))
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    shown = None
    while True:
        running, stuck = answer.get("running") or [], answer.get("cannot_move") or []
        if not args.json and (len(running), stuck) != shown:
            shown = (len(running), stuck)
            print(f"{len(running)} channel(s) still run here" + (f": {', '.join(running)}" if running else ""))
        if answer.get("drained") or (stuck and set(stuck) >= set(running)):
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(0.5)
        answer = json.loads(client.call("drain_status", "json"))
    done = bool(answer.get("drained"))
    if args.json:
        print_json(answer)
    elif done:
        print("drained: no channel runs on this server")
    elif answer.get("cannot_move"):
        print(f"cannot drain: no other live server offers {', '.join(answer['cannot_move'])}")
    else:
        print(f"timed out after {args.timeout:g} s; still running here: {', '.join(answer.get('running') or [])}")
    return 0 if done else 1


def _follow(client: Client, args: argparse.Namespace) -> int:
    client.call("ping")  # one clear line if the server is not there
    path = f"/api/v1/events?channel={urllib.parse.quote(args.follow)}"
    try:
        for event in sse_client.stream(path, location=client.location):
            data = event.json()
            if data.get("channel") != args.follow:
                continue
            if args.json:
                print(json.dumps({"event": event.name, **data}), flush=True)
            elif event.name == "generation":
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data["time"]))
                print(
                    f"{when}  {data['channel']}  generation {data['generation']}  {data['outcome']}  "
                    f"{data['duration']:.3f} s",
                    flush=True,
                )
            elif event.name == "state":
                print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {data['channel']}  state {data['state']}", flush=True)
    except (ConnectionError, OSError, http.client.HTTPException) as exc:
        raise CommandError(f"event stream of {client.url} failed: {exc}") from None
    return 0


#: channel states that count as "running" for --health (standby channels are BOOT)
HEALTHY_STATES = {State.BOOT.value, State.ACTIVE.value, State.STEADY.value}


def health(status: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(exit status, summary) of a server status: 0 every channel fine, 1 some failing."""
    channels = status.get("channels") or []
    failing = sorted(c["channel"] for c in channels if c.get("state") == State.ERROR.value)
    offline = sorted(
        c["channel"] for c in channels if c.get("state") not in HEALTHY_STATES and c["channel"] not in failing
    )
    # running, but its sources keep failing: no new generation until they recover
    sources_failing = {
        c["channel"]: sorted(c["failing_sources"])
        for c in channels
        if c.get("failing_sources") and c["channel"] not in failing and c["channel"] not in offline
    }
    code = 1 if failing or offline or sources_failing else 0
    return code, {
        "healthy": code == 0,
        "channels": len(channels),
        "error": failing,
        "not_running": offline,
        "failing_sources": sources_failing,
        "reaper": (status.get("reaper") or {}).get("state"),
    }


def _health(client: Client, args: argparse.Namespace) -> int:
    try:
        status = json.loads(client.call("status", "json"))
    except CommandError as exc:
        if args.json:
            print_json({"healthy": False, "reachable": False, "error": str(exc)})
        else:
            print(f"UNREACHABLE: {exc}")
        return 2
    code, summary = health(status)
    if args.json:
        print_json({**summary, "reachable": True})
        return code
    count = summary["channels"]
    if code == 0:
        print(f"OK: {count} channel{'s' if count != 1 else ''} running")
    else:
        parts = []
        if summary["error"]:
            parts.append(f"ERROR: {', '.join(summary['error'])}")
        if summary["not_running"]:
            parts.append(f"not running: {', '.join(summary['not_running'])}")
        if summary["failing_sources"]:
            failing = ", ".join(f"{name} ({', '.join(keys)})" for name, keys in summary["failing_sources"].items())
            parts.append(f"sources failing: {failing}")
        print(f"FAILING: {'; '.join(parts)} (of {count} channels)")
    return code


def _json_text(client: Client, args: argparse.Namespace, method: str, *params: Any) -> int:
    """Methods whose answer is JSON text already."""
    answer = json.loads(client.call(method, *params))
    if args.json:
        print_json(answer)
    else:
        print(json.dumps(answer, indent=2))
    return 0


def _list_methods(client: Client, args: argparse.Namespace) -> int:
    methods = client.call("list_rpc_methods")
    if args.json:
        print_json(methods)
    else:
        print("\n".join(methods))
    return 0


ACTIONS: list[tuple[str, Callable[[Client, argparse.Namespace], int]]] = [
    ("status", lambda c, a: _formatted(c, a, "status")),
    ("health", _health),
    ("print_products", _print_products),
    ("print_product", _print_product),
    ("start_channel", lambda c, a: _plain(c, a, "start_channel", a.start_channel)),
    ("stop_channel", lambda c, a: _plain(c, a, "stop_channel", a.stop_channel)),
    ("start_channels", lambda c, a: _plain(c, a, "start_channels")),
    ("stop_channels", lambda c, a: _plain(c, a, "stop_channels")),
    ("rm_channel", lambda c, a: _plain(c, a, "rm_channel", a.rm_channel, a.timeout)),
    ("kill_channel", _kill_channel),
    ("reaper_start", _reaper_start),
    ("reaper_stop", lambda c, a: _plain(c, a, "reaper_stop")),
    ("reaper_status", lambda c, a: _formatted(c, a, "reaper_status")),
    ("print_engine_loglevel", lambda c, a: _plain(c, a, "get_log_level")),
    ("set_engine_loglevel", lambda c, a: _plain(c, a, "set_log_level", a.set_engine_loglevel)),
    ("get_channel_loglevel", lambda c, a: _plain(c, a, "get_channel_log_level", a.get_channel_loglevel)),
    ("set_channel_loglevel", lambda c, a: _plain(c, a, "set_channel_log_level", *a.set_channel_loglevel)),
    ("get_source_loglevel", _source_loglevel),
    (
        "set_source_loglevel",
        lambda c, a: _plain(c, a, "set_source_log_level", *a.set_source_loglevel, a.channel),
    ),
    ("queue_status", _queue_status),
    ("block_while", _block_while),
    ("drain", _drain),
    ("undrain", lambda c, a: _formatted(c, a, "undrain")),
    ("cluster", lambda c, a: _formatted(c, a, "cluster")),
    ("follow", _follow),
    ("product_dependencies", lambda c, a: _formatted(c, a, "product_dependencies")),
    ("show_config", lambda c, a: _json_text(c, a, "show_config", a.show_config)),
    ("show_channel_config", lambda c, a: _json_text(c, a, "show_config", a.show_channel_config)),
    ("show_de_config", lambda c, a: _json_text(c, a, "show_de_config")),
    ("metrics", lambda c, a: _plain(c, a, "metrics")),
    ("list_rpc_methods", _list_methods),
    ("ping", lambda c, a: _plain(c, a, "ping")),
    ("stop", lambda c, a: _plain(c, a, "stop")),
]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    enable_completion(parser)
    args = parser.parse_args(argv)
    # ``is not``: 0.0 == False, and ``--reaper-start`` without a delay is 0.0
    chosen = [name for name, _ in ACTIONS if getattr(args, name) is not None and getattr(args, name) is not False]
    if not chosen:
        parser.error("no action given: add one, such as --status or --health (de-client --help lists them all)")
    for option, needs, given in (
        ("--types", "--print-product", args.types and args.print_product is None),
        ("--all", "--print-products", args.include_stopped and not args.print_products),
        ("-f/--force", "--kill-channel", args.force and args.kill_channel is None),
        (
            "--reaper-start-delay-secs",
            "--reaper-start",
            args.reaper_start_delay_secs is not None and args.reaper_start is None,
        ),
    ):
        if given:
            parser.error(f"{option} goes with {needs}")
    if args.force and args.timeout is not None:
        parser.error("give -f/--force (kill at once) or --timeout, not both")
    client = Client(location(args), verbose=args.verbose)
    if args.wait:
        client.wait_until_reachable(args.wait)
    for name, action in ACTIONS:
        value = getattr(args, name)
        if value is not None and value is not False:  # --reaper-start 0 is an action
            return action(client, args)
    raise CommandError("no action given", 2)  # argparse requires one; kept for safety


def location(args: argparse.Namespace) -> ServerLocation:
    """Where the server is and the token to send, from the options and the configuration."""
    config = None
    try:
        config, _warnings = load_global_config(args.config)
    except Exception as exc:
        if args.config:  # the operator named a file: say what is wrong with it
            raise CommandError(f"cannot read the configuration: {exc}", 2) from None
    try:
        if args.url:
            if args.host or args.port:
                raise CommandError("give --url, or --host/--port, not both", 2)
            url = normalize_url(args.url)
        else:
            url = url_from_config(config)
            if args.host or args.port:
                parts = urllib.parse.urlsplit(url if not url.startswith("unix:") else "http://localhost:8888")
                host = args.host or parts.hostname or "localhost"
                host = f"[{host}]" if ":" in host else host
                url = f"{parts.scheme}://{host}:{args.port or parts.port or 8888}"
        token = token_from(args.token_file, config)
    except ConnectionSetupError as exc:
        raise CommandError(str(exc), 2) from None
    return ServerLocation(url, token, args.ca_file, args.rpc_timeout)


def console() -> None:
    run_console(main, PROG)


if __name__ == "__main__":
    console()
