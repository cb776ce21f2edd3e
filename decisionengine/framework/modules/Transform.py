"""Transforms: modules that turn consumed products into new products.

A transform implements ``transform(self, data_block) -> dict``; ``@consumes`` gives it one
retriever per input (``self.foo(data_block)``) and ``@produces`` declares its outputs.
The framework orders transforms by what they consume and produce.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from decisionengine.framework.modules import describe as _describe
from decisionengine.framework.modules.decorators import consumes, produces, supports_config
from decisionengine.framework.modules.Module import Module
from decisionengine.framework.modules.parameter import Parameter

__all__ = ["Parameter", "Transform", "consumes", "describe", "produces", "supports_config"]


class Transform(Module):
    """Base class of transforms."""

    def __init__(self, set_of_parameters: Mapping[str, Any] | None = None) -> None:
        super().__init__(set_of_parameters)

    def transform(self, data_block: Any) -> dict[str, Any]:
        """Compute the declared products from the data block (any mapping of products)."""
        raise NotImplementedError(f"{type(self).__name__} must implement transform(data_block)")


def describe(cls: type, sample_config: Mapping[str, Any] | None = None) -> None:
    """Module CLI when the file runs as ``__main__`` (see :mod:`.describe`); otherwise nothing."""
    _describe.describe(cls, "transform", sample_config)
