"""The command line a module file offers when run as a script (``python -m pkg.MySource``).

Every module file ends with ``X.describe(MyClass, sample_config=...)``.  On a normal import
that call does nothing; when the file runs as ``__main__`` it parses the command line:

``--describe``
    print the products the class produces and consumes and its supported parameters;
``--config-template``
    print a channel-config (jsonnet) snippet with the module path, class name and parameters;
``-c/--acquire-with-config CHANNEL_FILE`` (sources)
    build the source with its parameters from that channel file, run ``acquire()`` once and
    print the products;
``-s/--acquire-with-sample-config`` (sources with a sample config)
    the same with the sample config given to ``describe``.

With no option it prints nothing and exits 0, so running a module file stays harmless.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import pprint
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from decisionengine.framework.modules.decorators import declared_products, supported_parameters
from decisionengine.framework.modules.Module import verify_products
from decisionengine.framework.modules.parameter import type_name

#: block of a channel file holding modules of each kind
BLOCKS = {"source": "sources", "transform": "transforms", "publisher": "publishers", "logicengine": "logicengines"}
DEFAULT_TEMPLATE_SCHEDULE = 300
SAMPLE_CHANNEL_NAME = "test"


def main_module_path(cls: type) -> str:
    """The importable name of the module defining ``cls``, even when it runs as ``__main__``."""
    if cls.__module__ != "__main__":
        return cls.__module__
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return spec.name
    main_file = getattr(main, "__file__", None)
    return pathlib.Path(main_file).stem if main_file else "__main__"


def describe(cls: type, kind: str, sample_config: Mapping[str, Any] | None = None) -> None:
    """Run the module CLI for ``cls`` if (and only if) its file is executing as ``__main__``."""
    if cls.__module__ != "__main__":
        return
    run(cls, kind, sample_config, sys.argv[1:])


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


def description(cls: type, kind: str, sample_config: Mapping[str, Any] | None = None) -> str:
    """The text ``--describe`` prints."""
    lines = [f"{cls.__name__} ({kind}, module {main_module_path(cls)})"]
    for title, attribute in (("produces", "_produces"), ("consumes", "_consumes")):
        products, origin = declared_products(cls, attribute), ""
        if not products and sample_config is not None:
            # modules such as EmptySource set the attribute in __init__: ask an instance
            products = _instance_products(cls, sample_config, attribute)
            origin = " (set by the instance; shown for the sample config)" if products else ""
        lines.append(f"{title}:" + (origin if products else " (none)"))
        lines.extend(f"  {name}: {type_name(product_type)}" for name, product_type in products.items())
    parameters = supported_parameters(cls)
    lines.append("parameters:" + ("" if parameters else " (none declared)"))
    lines.extend(f"  {parameter.describe()}" for parameter in parameters.values())
    if sample_config is not None:
        lines.append(f"sample config: {json.dumps(sample_config, default=repr)}")
    return "\n".join(lines)


def _instance_products(cls: type, sample_config: Mapping[str, Any], attribute: str) -> dict[str, Any]:
    try:
        instance = cls({**dict(sample_config), "channel_name": SAMPLE_CHANNEL_NAME})
        return declared_products(instance, attribute)
    except Exception:
        return {}


def config_template(cls: type, kind: str) -> str:
    """A jsonnet snippet declaring the module in its channel-file block.

    Required parameters appear as ``null`` with a ``// required`` comment to fill in.
    """
    pad = " " * 6
    parameter_lines = []
    for parameter in supported_parameters(cls).values():
        value = "null" if parameter.required else json.dumps(parameter.default, default=repr)
        notes = [type_name(parameter.type)]
        if parameter.required:
            notes.insert(0, "required")
        if parameter.comment:
            notes.append(parameter.comment)
        parameter_lines.append(f"{pad}  {json.dumps(parameter.name)}: {value},  // {', '.join(notes)}")
    body = [
        f"{pad}module: {json.dumps(main_module_path(cls))},",
        f"{pad}name: {json.dumps(cls.__name__)},",
        f"{pad}parameters: {{" + ("" if parameter_lines else "},"),
    ]
    if parameter_lines:
        body.extend(parameter_lines)
        body.append(f"{pad}}},")
    if kind == "source":
        body.append(f"{pad}schedule: {DEFAULT_TEMPLATE_SCHEDULE},  // seconds, or a cron string such as '*/5 * * * *'")
    return "\n".join(
        ["{", f"  {BLOCKS[kind]}: {{", f"    {json.dumps(cls.__name__)}: {{", *body, "    },", "  },", "}"]
    )


def config_from_channel_file(cls: type, channel_file: str) -> tuple[dict[str, Any], str]:
    """The parameters of ``cls``'s entry in a channel file's sources, and the channel's name."""
    from decisionengine.framework.config.ValidConfig import ValidConfig  # noqa: PLC0415 (config imports modules)

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
    from decisionengine.framework.config.parameters import check_parameters  # noqa: PLC0415 (config imports modules)

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
