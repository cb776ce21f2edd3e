"""``EmptySource``: a placeholder source producing one empty DataFrame.

Its single product is named by the ``data_product_name`` parameter (required: without it
construction raises ``RuntimeError`` naming it), so ``_produces`` is set on the instance
rather than declared with ``@produces``; channel validation reads it from an instance for
that reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from decisionengine.framework.modules import Source
from decisionengine.framework.modules.Source import Parameter


@Source.supports_config(Parameter("data_product_name", type=str, comment="name of the empty DataFrame produced"))
class EmptySource(Source.Source):
    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.data_product_name = config.get("data_product_name") if isinstance(config, Mapping) else None
        if not self.data_product_name:
            # as the reference: a RuntimeError naming the parameter, at construction
            raise RuntimeError(
                "EmptySource needs the parameter 'data_product_name' (the name of the empty DataFrame it produces)"
            )
        self._produces = {self.data_product_name: pd.DataFrame}

    def acquire(self) -> dict[str, Any]:
        return {self.data_product_name: pd.DataFrame()}


Source.describe(EmptySource, sample_config={"data_product_name": "placeholder"})
