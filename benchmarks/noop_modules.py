"""No-op modules for benchmarks/engine.py: 3 sources, 3 transforms, 2 publishers, tiny products."""

import time

import pandas as pd

from decisionengine.framework.modules import Publisher, Source, Transform
from decisionengine.framework.modules.Source import Parameter


@Source.produces(s1=int)
class Source1(Source.Source):
    def acquire(self):
        return {"s1": 1}


@Source.produces(s2=int)
class Source2(Source.Source):
    def acquire(self):
        return {"s2": 2}


@Source.produces(s3=int)
class Source3(Source.Source):
    def acquire(self):
        return {"s3": 3}


@Transform.consumes(s1=int, s2=int)
@Transform.produces(t1=int)
class Transform1(Transform.Transform):
    def transform(self, data_block):
        return {"t1": self.s1(data_block) + self.s2(data_block)}


@Transform.consumes(t1=int, s3=int)
@Transform.produces(t2=int)
class Transform2(Transform.Transform):
    def transform(self, data_block):
        return {"t2": self.t1(data_block) * self.s3(data_block)}


@Transform.consumes(t2=int)
@Transform.produces(t3=int)
class Transform3(Transform.Transform):
    def transform(self, data_block):
        return {"t3": self.t2(data_block) - 1}


@Publisher.consumes(t3=int)
class Publisher1(Publisher.Publisher):
    def publish(self, data_block):
        self.t3(data_block)


@Publisher.consumes(t3=int)
class Publisher2(Publisher.Publisher):
    def publish(self, data_block):
        self.t3(data_block)


def channel(schedule: float, owner: str = "", **task_manager) -> dict:
    """The benchmark channel as a channel-file dict.

    ``owner``: part of its source names, so that copies of this channel made with different
    owners each have sources of their own (sources of one name and configuration are shared
    between channels: README "Sources shared by channels").
    """
    here = "benchmarks.noop_modules"
    suffix = f"_{owner}" if owner else ""
    return {
        "sources": {f"src{i}{suffix}": {"module": here, "name": f"Source{i}", "schedule": schedule} for i in (1, 2, 3)},
        "transforms": {f"tr{i}": {"module": here, "name": f"Transform{i}"} for i in (1, 2, 3)},
        "logicengines": {
            "le": {
                "module": "decisionengine.framework.logicengine.LogicEngine",
                "parameters": {
                    "facts": {"positive": "t3 > 0", "small": "t3 < 100"},
                    "rules": {"go": {"expression": "positive and small", "actions": ["pub1", "pub2"]}},
                },
            }
        },
        "publishers": {
            "pub1": {"module": here, "name": "Publisher1"},
            "pub2": {"module": here, "name": "Publisher2"},
        },
        "task_manager": task_manager,
    }


@Source.supports_config(Parameter("record", type=str, default=""), Parameter("rows", type=int, default=2000))
@Source.produces(jobs=pd.DataFrame)
class RecordedSource(Source.Source):
    """A job-queue-like frame of ``rows`` rows; appends the acquire time to ``record``
    (one line per acquisition, whatever process runs it)."""

    def acquire(self):
        if self.parameters.get("record"):
            with open(self.parameters["record"], "a") as out:
                out.write(f"{time.time()}\n")
        rows = self.parameters.get("rows", 2000)
        return {"jobs": pd.DataFrame({"id": range(rows), "cores": [4] * rows, "site": ["A", "B"] * (rows // 2)})}


@Publisher.consumes(jobs=pd.DataFrame)
class JobsPublisher(Publisher.Publisher):
    def publish(self, data_block):
        self.jobs(data_block)


def jobs_channel(source_key: str, schedule: float, record: str) -> dict:
    """A channel of one job-queue source and one publisher (benchmarks of shared sources)."""
    here = "benchmarks.noop_modules"
    return {
        "sources": {
            source_key: {
                "module": here,
                "name": "RecordedSource",
                "parameters": {"record": record},
                "schedule": schedule,
            }
        },
        "publishers": {"pub": {"module": here, "name": "JobsPublisher", "parameters": {}}},
    }
