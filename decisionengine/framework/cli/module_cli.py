"""The command line of a module file run as a script (``python -m pkg.MySource``).

:func:`decisionengine.framework.modules.describe.describe` hands the command line here
when a module file runs as ``__main__``:

``--describe``
    print the products the class produces and consumes and its supported parameters;
``--config-template``
    print a channel-config (jsonnet) snippet with the module path, class name and parameters;
``-c/--acquire-with-config CHANNEL_FILE`` (sources)
    build the source with its parameters from that channel file (read and checked as a
    channel would be), run ``acquire()`` once and print the products;
``-s/--acquire-with-sample-config`` (sources with a sample config)
    the same with the sample config given to ``describe``.

With no option it prints nothing and exits 0, so running a module file stays harmless.
"""

from __future__ import annotations

import argparse
import pathlib
import pprint
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from decisionengine.framework.config.parameters import check_parameters
from decisionengine.framework.config.ValidConfig import ValidConfig
from decisionengine.framework.modules.describe import (
    SAMPLE_CHANNEL_NAME,
    config_template,
    description,
    main_module_path,
)
from decisionengine.framework.modules.Module import verify_products


def _parser(cls: type, kind: str, sample_config: Mapping[str, Any] | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {main_module_path(cls)}", description=f"{kind} {cls.__name__}: describe or try it out"
    )
    parser.add_argument("--describe", action="store_true", help="print produces/consumes and supported parameters")
    parser.add_argument("--config-template", action="store_true", help="print a channel-config snippet for the module")
    if kind == "source":
        parser.add_argument(
            "-c",
            "--acquire-with-config",
            metavar="CHANNEL_FILE",
            help="run acquire() once with the module's parameters from CHANNEL_FILE and print the products",
        )
        if sample_config is not None:
            parser.add_argument(
                "-s",
                "--acquire-with-sample-config",
                action="store_true",
                help="run acquire() once with the sample config and print the products",
            )
    return parser


def run(cls: type, kind: str, sample_config: Mapping[str, Any] | None, argv: Sequence[str]) -> None:
    """Parse ``argv`` and do what it asks (see the module docstring)."""
    args = _parser(cls, kind, sample_config).parse_args(list(argv))
    if args.describe:
        print(description(cls, kind, sample_config))
    if args.config_template:
        print(config_template(cls, kind))
    if kind == "source":
        if getattr(args, "acquire_with_sample_config", False):
            _acquire_and_print(cls, dict(sample_config or {}), SAMPLE_CHANNEL_NAME)
        if args.acquire_with_config:
            parameters, channel_name = config_from_channel_file(cls, args.acquire_with_config)
            _acquire_and_print(cls, parameters, channel_name)


def config_from_channel_file(cls: type, channel_file: str) -> tuple[dict[str, Any], str]:
    """The parameters of ``cls``'s entry in a channel file's sources, and the channel's name."""
    channel = ValidConfig(channel_file)
    module_path = main_module_path(cls)
    sources = channel.get("sources") or {}
    matches = [
        entry
        for entry in sources.values()
        if isinstance(entry, Mapping)
        and entry.get("module") == module_path
        and entry.get("name", cls.__name__) == cls.__name__
    ]
    if not matches:
        sys.exit(f"{channel_file}: no source with module {module_path!r} and name {cls.__name__!r}")
    if len(matches) > 1:
        sys.exit(f"{channel_file}: {len(matches)} sources use module {module_path!r} class {cls.__name__!r}")
    channel_name = channel.get("channel_name") or pathlib.Path(channel_file).stem
    return dict(matches[0].get("parameters") or {}), channel_name


def _acquire_and_print(cls: type, parameters: dict[str, Any], channel_name: str) -> None:
    """Build the source as a channel would (parameter policy, defaults, channel_name) and acquire once."""
    checked = check_parameters(cls, parameters, channel_name)
    for warning in checked.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if checked.problems:
        sys.exit("error: " + "; ".join(checked.problems))
    instance = cls(checked.parameters)
    products = instance.acquire()
    print(format_products(products))
    try:
        verify_products(instance, products)
    except RuntimeError as exc:
        sys.exit(f"error: acquire() result does not match the declared products: {exc}")


def format_products(products: Any) -> str:
    """Products as text: each name, then its value (DataFrames in pandas' layout)."""
    if not isinstance(products, Mapping):
        return pprint.pformat(products)
    chunks = []
    for name, value in products.items():
        text = value.to_string() if hasattr(value, "to_string") else pprint.pformat(value)
        chunks.append(f"{name}:\n{text}")
    return "\n".join(chunks)
