"""Publishers: modules that act on the world when the logic engine names them.

A publisher implements ``publish(self, data_block)`` and may override ``shutdown()``,
which the framework calls once when the channel stops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from decisionengine.framework.modules import describe as _describe
from decisionengine.framework.modules.decorators import consumes, supports_config
from decisionengine.framework.modules.Module import Module
from decisionengine.framework.modules.parameter import Parameter

__all__ = ["Parameter", "Publisher", "consumes", "describe", "supports_config"]


class Publisher(Module):
    """Base class of publishers."""

    def __init__(self, set_of_parameters: Mapping[str, Any] | None = None) -> None:
        super().__init__(set_of_parameters)

    def publish(self, data_block: Any) -> None:
        """Act on the products of the current generation."""
        raise NotImplementedError(f"{type(self).__name__} must implement publish(data_block)")

    def shutdown(self) -> None:
        """Release resources when the channel stops (default: nothing to do)."""


def describe(cls: type, sample_config: Mapping[str, Any] | None = None) -> None:
    """Module CLI when the file runs as ``__main__`` (see :mod:`.describe`); otherwise nothing."""
    _describe.describe(cls, "publisher", sample_config)
