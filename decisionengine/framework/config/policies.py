"""Where configuration lives, and the environment variables that move it.

* the global directory is ``$CONFIG_PATH``, else ``/etc/decisionengine``;
* the global file in it is ``decision_engine.jsonnet``;
* channel files are in ``$CHANNEL_CONFIG_PATH``, else the global config's ``channels`` key,
  else ``<global dir>/config.d``.

Each function checks that the directory exists and fails naming it (and where the name came
from) when it does not, instead of letting a later open() fail obscurely.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

GLOBAL_CONFIG_FILENAME = "decision_engine.jsonnet"
CONFIG_PATH_ENV = "CONFIG_PATH"
CHANNEL_CONFIG_PATH_ENV = "CHANNEL_CONFIG_PATH"
DEFAULT_CONFIG_DIR = "/etc/decisionengine"
CHANNEL_SUBDIR = "config.d"


def _existing_dir(path: str | os.PathLike[str], origin: str) -> str:
    directory = pathlib.Path(path)
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise RuntimeError(f"configuration directory {str(directory)!r} ({origin}) {problem}")
    return str(directory)


def global_config_dir() -> str:
    """The global configuration directory: ``$CONFIG_PATH`` or ``/etc/decisionengine``."""
    env = os.environ.get(CONFIG_PATH_ENV)
    if env:
        return _existing_dir(env, f"from ${CONFIG_PATH_ENV}")
    return _existing_dir(DEFAULT_CONFIG_DIR, f"the default; set ${CONFIG_PATH_ENV} to use another")


def global_config_file() -> str:
    """The path of ``decision_engine.jsonnet`` in the global configuration directory."""
    return str(pathlib.Path(global_config_dir()) / GLOBAL_CONFIG_FILENAME)


def channel_config_dir(global_config: Mapping[str, Any] | None = None) -> str:
    """The channel directory: ``$CHANNEL_CONFIG_PATH``, the global ``channels`` key, or ``<global>/config.d``."""
    env = os.environ.get(CHANNEL_CONFIG_PATH_ENV)
    if env:
        return _existing_dir(env, f"from ${CHANNEL_CONFIG_PATH_ENV}")
    configured = (global_config or {}).get("channels")
    if configured:
        return _existing_dir(configured, "from the global configuration's 'channels' key")
    return _existing_dir(
        pathlib.Path(global_config_dir()) / CHANNEL_SUBDIR,
        f"the default <global dir>/{CHANNEL_SUBDIR}; set ${CHANNEL_CONFIG_PATH_ENV} or 'channels' to change it",
    )
