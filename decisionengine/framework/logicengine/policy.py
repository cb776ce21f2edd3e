"""Which publishers run in a generation, given a channel's ``logicengines`` block.

* no ``logicengines`` key: there is nothing to decide, so every publisher runs;
* an empty block: the operator switched decisions off, so no publisher runs;
* one logic engine: the publishers its rules fire run;
* more than one: an error naming them (their decisions could contradict each other).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any


class PublisherPolicy(enum.Enum):
    ALL = "all publishers run every generation (no logicengines key)"
    NONE = "no publisher runs (empty logicengines block)"
    LOGIC_ENGINE = "the publishers fired by the logic engine run"


class LogicEnginePolicyError(ValueError):
    """A channel configures more than one logic engine."""


def logic_engine_key(channel_config: Mapping[str, Any]) -> str | None:
    """The key of the channel's logic engine, None without one; error naming them if several."""
    block = channel_config.get("logicengines")
    if not block:
        return None
    keys = list(block)
    if len(keys) > 1:
        raise LogicEnginePolicyError(
            f"a channel may have at most one logic engine, found {len(keys)}: {', '.join(map(repr, keys))}"
        )
    return keys[0]


def publisher_policy(channel_config: Mapping[str, Any]) -> PublisherPolicy:
    """The policy for a channel configuration (see the module docstring)."""
    if "logicengines" not in channel_config or channel_config["logicengines"] is None:
        return PublisherPolicy.ALL
    if logic_engine_key(channel_config) is None:
        return PublisherPolicy.NONE
    return PublisherPolicy.LOGIC_ENGINE


def publishers_to_run(policy: PublisherPolicy, publishers: Iterable[str], fired: Iterable[str] = ()) -> list[str]:
    """The publishers to run, in channel order, given the policy and the actions fired."""
    publishers = list(publishers)
    if policy is PublisherPolicy.ALL:
        return publishers
    if policy is PublisherPolicy.NONE:
        return []
    fired = set(fired)
    return [name for name in publishers if name in fired]
