"""Sources: modules that gather state from the outside world on their own schedules.

A source implements ``acquire(self) -> dict`` returning ``{product name: value}`` for the
products it declares with ``@produces``.  Typical file::

    from decisionengine.framework.modules import Source
    from decisionengine.framework.modules.Source import Parameter

    @Source.supports_config(Parameter("multiplier", type=int, default=1))
    @Source.produces(foo=pd.DataFrame)
    class MySource(Source.Source):
        def acquire(self):
            return {"foo": pd.DataFrame(...)}

    Source.describe(MySource, sample_config={"multiplier": 2})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from decisionengine.framework.modules import describe as _describe
from decisionengine.framework.modules.decorators import produces, supports_config
from decisionengine.framework.modules.Module import Module
from decisionengine.framework.modules.parameter import Parameter

__all__ = ["Parameter", "Source", "describe", "produces", "supports_config"]


class Source(Module):
    """Base class of sources."""

    def __init__(self, set_of_parameters: Mapping[str, Any] | None = None) -> None:
        super().__init__(set_of_parameters)

    def acquire(self) -> dict[str, Any]:
        """Gather the declared products; called on the source's schedule."""
        raise NotImplementedError(f"{type(self).__name__} must implement acquire()")


def describe(cls: type, sample_config: Mapping[str, Any] | None = None) -> None:
    """Module CLI when the file runs as ``__main__`` (see :mod:`.describe`); otherwise nothing."""
    _describe.describe(cls, "source", sample_config)
