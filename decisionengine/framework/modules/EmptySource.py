"""``EmptySource``: a placeholder source producing one empty DataFrame.

Its single product is named by the ``data_product_name`` parameter, so ``_produces`` is
set on the instance rather than declared with ``@produces``; channel validation reads it
from an instance for that reason.
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
        self.data_product_name = config.get("data_product_name")
        self._produces = {self.data_product_name: pd.DataFrame}

    def acquire(self) -> dict[str, Any]:
        return {self.data_product_name: pd.DataFrame()}


Source.describe(EmptySource, sample_config={"data_product_name": "placeholder"})
