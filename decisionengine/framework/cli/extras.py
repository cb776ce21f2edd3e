"""Optional parts of the package, installed as extras, and what a user is told without them.

Most sites need neither, so the base install leaves them out:

``parquet``     pyarrow, for ``de-query-tool --format parquet`` (about 170 MB installed);
``completion``  argcomplete, for shell completion of the commands (small; an extra because few
                use it).

``pip install 'decisionengine[parquet,completion]'`` (or ``[all]``) brings them.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from decisionengine.framework.cli.common import CommandError

#: extra -> (the module it provides, what it is for)
EXTRAS = {
    "parquet": ("pyarrow", "Parquet output"),
    "completion": ("argcomplete", "shell completion"),
}


def installed(extra: str) -> bool:
    module, _ = EXTRAS[extra]
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # a module set to None in sys.modules: not importable
        return False


def missing_message(extra: str) -> str:
    module, feature = EXTRAS[extra]
    return f"{feature} needs the '{extra}' extra ({module} is not installed): pip install 'decisionengine[{extra}]'"


def require(extra: str) -> None:
    """Raise :class:`CommandError` (exit status 2) naming the extra when it is not installed."""
    if not installed(extra):
        raise CommandError(missing_message(extra), 2)


def enable_completion(parser: object) -> None:
    """Shell completion through argcomplete, when the ``completion`` extra is installed.

    argcomplete's shell hook runs the command with ``_ARGCOMPLETE`` set and expects
    completions, not a run: without argcomplete the command must not go on (a TAB must
    never start a server or stop a channel), so it says what is missing and exits.
    """
    if installed("completion"):
        import argcomplete  # noqa: PLC0415 - optional

        argcomplete.autocomplete(parser)
    elif os.environ.get("_ARGCOMPLETE"):
        sys.stderr.write(missing_message("completion") + "\n")
        sys.exit(1)
