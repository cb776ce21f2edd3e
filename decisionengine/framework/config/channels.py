"""Loading every channel of a ``config.d/`` directory.

Every ``*.jsonnet`` file directly in the directory is one channel, named after the file
(``jobs.jsonnet`` -> ``jobs``) unless it sets ``channel_name``.  Other files (``.libsonnet``
libraries, ``.json``, editor backups, hidden files) are ignored.  A channel that fails --
bad jsonnet, bad structure, a module that does not import, a broken product graph -- is
reported in ``failures`` with its reason, and every other channel still loads: one bad
file must never stop the others.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from decisionengine.framework.config import policies
from decisionengine.framework.config.channel_file import ChannelConfig, read_channel_file
from decisionengine.framework.config.plan import ChannelPlan
from decisionengine.framework.config.validation import validate_channel

CHANNEL_SUFFIX = ".jsonnet"


@dataclass(frozen=True)
class ChannelFailure:
    """A channel that cannot run: its name (file stem or ``channel_name``), file and reason."""

    name: str
    path: str
    reason: str


@dataclass(frozen=True)
class ChannelSet:
    """The outcome of loading a directory: runnable channels and failures, both by name."""

    directory: str
    plans: dict[str, ChannelPlan] = field(default_factory=dict)
    failures: dict[str, ChannelFailure] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return [w for plan in self.plans.values() for w in plan.warnings]


def channel_files(directory: str | os.PathLike[str]) -> list[pathlib.Path]:
    """The channel files of a directory, sorted by name."""
    return sorted(
        path
        for path in pathlib.Path(directory).iterdir()
        if path.suffix == CHANNEL_SUFFIX and not path.name.startswith((".", "#")) and path.is_file()
    )


def strict_parameters(global_config: Mapping[str, Any] | None) -> bool:
    """The global ``strict_parameters`` setting (false when there is no global configuration)."""
    return bool((global_config or {}).get("strict_parameters", False))


def load_channel(path: str | os.PathLike[str], global_config: Mapping[str, Any] | None = None) -> ChannelPlan:
    """Read and validate one channel file (raises on any problem, see :func:`load_channels`)."""
    return validate_channel(read_channel_file(path), strict_parameters=strict_parameters(global_config))


def read_channels(directory: str | os.PathLike[str]) -> tuple[dict[str, ChannelConfig], dict[str, ChannelFailure]]:
    """Read (but do not validate) every channel file of ``directory``: cheap, imports no module.

    Returns ({name: ChannelConfig}, {name: ChannelFailure}); a file that does not evaluate or
    whose structure is wrong, and names claimed by several files, are failures.
    """
    configs: dict[str, ChannelConfig] = {}
    failures: dict[str, ChannelFailure] = {}
    read: list[ChannelConfig] = []
    for path in channel_files(directory):
        try:
            read.append(read_channel_file(path))
        except Exception as exc:
            failures[path.stem] = ChannelFailure(path.stem, str(path), str(exc))
    claimed: dict[str, list[ChannelConfig]] = {}
    for config in read:
        claimed.setdefault(config.name, []).append(config)
    for name, same in claimed.items():
        if len(same) > 1 or name in failures:
            earlier = failures.get(name)
            files = ", ".join([str(c.path) for c in same] + ([earlier.path] if earlier else []))
            reason = f"channel name {name!r} is used by several files: {files}"
            if earlier:
                reason += f"; {earlier.path} failed: {earlier.reason}"
            failures[name] = ChannelFailure(name, files, reason)
            continue
        configs[name] = same[0]
    return configs, failures


def load_channels(
    directory: str | os.PathLike[str] | None = None, global_config: Mapping[str, Any] | None = None
) -> ChannelSet:
    """Load and validate every channel of ``directory`` (default: :func:`~.policies.channel_config_dir`)."""
    if directory is None:
        directory = policies.channel_config_dir(global_config)
    elif not pathlib.Path(directory).is_dir():
        raise RuntimeError(f"channel configuration directory {str(directory)!r} does not exist")
    configs, failures = read_channels(directory)
    result = ChannelSet(str(directory), failures=failures)
    for name, config in configs.items():
        try:
            result.plans[name] = validate_channel(config, strict_parameters=strict_parameters(global_config))
        except Exception as exc:
            result.failures[name] = ChannelFailure(name, str(config.path), str(exc))
    return result
