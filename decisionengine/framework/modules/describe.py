"""What a module says about itself, and the hook for its command line.

Every module file ends with ``X.describe(MyClass, sample_config=...)``.  On a normal import
that call does nothing; when the file runs as ``__main__`` (``python -m pkg.MySource``) it
hands the command line to :mod:`decisionengine.framework.cli.module_cli`, which offers:

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

The descriptions (:func:`description`, :func:`config_template`) live here because they
only need the module's own declarations.  Reading a channel file and applying the
parameter policy belong to the configuration layer, above this one, so the command line
that needs them is in the CLI layer and is looked up by name only when a module file runs
as a script: importing a module never loads it, and modules never depend on the layers
that run them.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

from decisionengine.framework.modules.decorators import declared_products, supported_parameters
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


#: the module holding ``run(cls, kind, sample_config, argv)``, the module command line
MODULE_CLI = "decisionengine.framework.cli.module_cli"


def describe(cls: type, kind: str, sample_config: Mapping[str, Any] | None = None) -> None:
    """Run the module CLI for ``cls`` if (and only if) its file is executing as ``__main__``."""
    if cls.__module__ != "__main__":
        return
    importlib.import_module(MODULE_CLI).run(cls, kind, sample_config, sys.argv[1:])


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
