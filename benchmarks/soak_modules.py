"""Modules for benchmarks/soak.py: a counting source, a transform that fails on demand, and a
publisher that records the idempotency key of every generation it acts on."""

import json
import os
import pathlib
import time

import pandas as pd

from decisionengine.framework.modules import Publisher, Source, Transform
from decisionengine.framework.modules.Source import Parameter


@Source.supports_config(Parameter("rows", type=int, default=100))
@Source.produces(numbers=pd.DataFrame)
class SoakSource(Source.Source):
    def __init__(self, config):
        super().__init__(config)
        self.calls = 0

    def acquire(self):
        self.calls += 1
        rows = self.parameters.get("rows", 100)
        return {"numbers": pd.DataFrame({"n": [self.calls] * rows, "x": range(rows)})}


@Transform.supports_config(Parameter("fault_file", type=str))
@Transform.consumes(numbers=pd.DataFrame)
@Transform.produces(total=int)
class SoakTransform(Transform.Transform):
    """Sums ``x``; raises, hangs or exits while its fault file says so."""

    def transform(self, data_block):
        try:
            fault = pathlib.Path(self.parameters["fault_file"]).read_text().strip()
        except FileNotFoundError:
            fault = ""
        if fault == "raise":
            raise RuntimeError("injected failure")
        if fault == "hang":
            time.sleep(3600)
        if fault == "exit":
            os._exit(3)
        return {"total": int(self.numbers(data_block)["x"].sum())}


@Publisher.supports_config(Parameter("record", type=str))
@Publisher.consumes(total=int)
class SoakPublisher(Publisher.Publisher):
    """Appends the generation's idempotency key to ``record`` (one line per action)."""

    def publish(self, data_block):
        with open(self.parameters["record"], "a") as out:
            out.write(json.dumps({"key": data_block.idempotency_key, "time": time.time()}) + "\n")
