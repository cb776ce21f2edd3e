"""A minimal client making exactly the XML-RPC calls of the reference 1.7 ``de-client`` and
``de-query-tool``: the same method names, positional arguments and argument types
(argparse's ``None`` for an option not given, ``False`` for ``--types`` not given, an int
from ``--reaper-start-delay-secs``, floats from ``--timeout``), through a plain
``xmlrpc.client.ServerProxy(url, allow_none=True)`` as theirs: no token header, no path
(``/RPC2``).  A token goes in the URL as the reference's clients allow
(``http://de:TOKEN@host:port``: HTTP Basic authentication).

Only the standard library: it stands for scripts that know nothing of this project.

    python reference_client.py URL --channel C --product P --source S [--history-product H]

prints one JSON object per call, in order: ``{"command", "method", "params", "result"}``,
or ``"fault": {"code", "string"}`` in place of ``result`` when the server refused it.
Reads come first, then orders (log levels, the Reaper, stopping, starting, killing and
removing the channel, which ends running again); ``--stop`` ends with ``stop()``.
"""

from __future__ import annotations

import argparse
import json
import sys
import xmlrpc.client
from typing import Any


def calls(channel: str, product: str, source: str, history_product: str) -> list[tuple[str, str, tuple[Any, ...]]]:
    """(the reference command, the method it calls, its positional arguments)."""
    return [
        # -- de-client: server
        ("de-client --ping", "ping", ()),
        ("de-client --status", "status", ()),
        ("de-client --show-de-config", "show_de_config", ()),
        ("de-client --print-engine-loglevel", "get_log_level", ()),
        ("de-client --product-dependencies", "product_dependencies", ()),
        ("de-client --metrics", "metrics", ()),
        ("de-client --queue-status", "queue_status", ()),
        ("de-client --block-while BOOT --timeout 60", "block_while", ("BOOT", 60.0)),
        # -- de-client: products (print_product(product, columns, query, types, format))
        ("de-client --print-products", "print_products", ()),
        (f"de-client --print-product {product}", "print_product", (product, None, None, False, None)),
        (
            f"de-client --print-product {product} --columns x --query 'x > 0'",
            "print_product",
            (product, "x", "x > 0", False, None),
        ),
        (f"de-client --print-product {product} --types", "print_product", (product, None, None, True, None)),
        (
            f"de-client --print-product {product} --format vertical",
            "print_product",
            (product, None, None, False, "vertical"),
        ),
        (
            f"de-client --print-product {product} --format column-names",
            "print_product",
            (product, None, None, False, "column-names"),
        ),
        (f"de-client --print-product {product} --format json", "print_product", (product, None, None, False, "json")),
        (
            f"de-client --print-product {product} --types --format csv",
            "print_product",
            (product, None, None, True, "csv"),
        ),
        (
            "de-client --print-product nothing_makes_this",
            "print_product",
            ("nothing_makes_this", None, None, False, None),
        ),
        # -- de-query-tool: query_tool(product, format, start_time)
        (f"de-query-tool {history_product}", "query_tool", (history_product, None, None)),
        (
            f"de-query-tool {history_product} --format csv --since '2000-01-01 00:00:00'",
            "query_tool",
            (history_product, "csv", "2000-01-01 00:00:00"),
        ),
        (f"de-query-tool {history_product} --format json", "query_tool", (history_product, "json", None)),
        # -- de-client: configuration and levels
        ("de-client --show-config", "show_config", ("all",)),
        (f"de-client --show-channel-config {channel}", "show_config", (channel,)),
        (f"de-client --get-channel-loglevel {channel}", "get_channel_log_level", (channel,)),
        (f"de-client --get-source-loglevel {source}", "get_source_log_level", (source,)),
        (f"de-client --set-source-loglevel {source} DEBUG", "set_source_log_level", (source, "DEBUG")),
        (f"de-client --get-source-loglevel {source} (after)", "get_source_log_level", (source,)),
        (f"de-client --set-channel-loglevel {channel} WARNING", "set_channel_log_level", (channel, "WARNING")),
        (f"de-client --get-channel-loglevel {channel} (after)", "get_channel_log_level", (channel,)),
        (f"de-client --set-channel-loglevel {channel} INFO", "set_channel_log_level", (channel, "INFO")),
        # -- de-client: the Reaper
        ("de-client --reaper-status", "reaper_status", ()),
        ("de-client --reaper-stop", "reaper_stop", ()),
        ("de-client --reaper-start --reaper-start-delay-secs 3600", "reaper_start", (3600,)),
        ("de-client --reaper-status (after)", "reaper_status", ()),
        # -- de-client: channels
        (f"de-client --stop-channel {channel}", "stop_channel", (channel,)),
        (f"de-client --start-channel {channel}", "start_channel", (channel,)),
        ("de-client --block-while BOOT (after start)", "block_while", ("BOOT", None)),
        (f"de-client --kill-channel {channel} --timeout 5", "kill_channel", (channel, 5.0)),
        (f"de-client --start-channel {channel} (again)", "start_channel", (channel,)),
        ("de-client --block-while BOOT --timeout 60 (again)", "block_while", ("BOOT", 60.0)),
        (f"de-client --kill-channel {channel} -f", "kill_channel", (channel, 0)),
        (f"de-client --start-channel {channel} (after -f)", "start_channel", (channel,)),
        ("de-client --block-while BOOT --timeout 60 (after -f)", "block_while", ("BOOT", 60.0)),
        (f"de-client --kill-channel {channel}", "kill_channel", (channel, None)),
        (f"de-client --start-channel {channel} (before rm)", "start_channel", (channel,)),
        ("de-client --block-while BOOT --timeout 60 (before rm)", "block_while", ("BOOT", 60.0)),
        (f"rm_channel({channel}, 10)", "rm_channel", (channel, 10)),
        ("de-client --status (after rm)", "status", ()),
        (f"de-client --start-channel {channel} (after rm)", "start_channel", (channel,)),
        ("de-client --block-while BOOT --timeout 60 (after rm)", "block_while", ("BOOT", 60.0)),
        ("de-client --stop-channels", "stop_channels", ()),
        ("de-client --start-channels", "start_channels", ()),
        ("de-client --block-while BOOT --timeout 60 (last)", "block_while", ("BOOT", 60.0)),
    ]


def run(url: str, steps: list[tuple[str, str, tuple[Any, ...]]]) -> int:
    server = xmlrpc.client.ServerProxy(url, allow_none=True)
    for command, method, params in steps:
        entry: dict[str, Any] = {"command": command, "method": method, "params": list(params)}
        try:
            entry["result"] = getattr(server, method)(*params)
        except xmlrpc.client.Fault as fault:
            entry["fault"] = {"code": fault.faultCode, "string": fault.faultString}
        except xmlrpc.client.ProtocolError as error:
            entry["fault"] = {"code": error.errcode, "string": error.errmsg}
        print(json.dumps(entry), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="http://host:port, or http://de:TOKEN@host:port")
    parser.add_argument("--channel", required=True)
    parser.add_argument("--product", required=True, help="a DataFrame product with a numeric column x")
    parser.add_argument("--source", required=True)
    parser.add_argument("--history-product", help="the product for de-query-tool (default: --product)")
    parser.add_argument("--only", help="comma-separated methods: make only those calls")
    parser.add_argument("--stop", action="store_true", help="end with stop(): the server stops")
    args = parser.parse_args(argv)
    steps = calls(args.channel, args.product, args.source, args.history_product or args.product)
    if args.only:
        wanted = set(args.only.split(","))
        steps = [step for step in steps if step[1] in wanted]
    if args.stop:
        steps.append(("de-client --stop", "stop", ()))
    return run(args.url, steps)


if __name__ == "__main__":
    sys.exit(main())
