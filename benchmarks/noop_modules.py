"""No-op modules for benchmarks/engine.py: 3 sources, 3 transforms, 2 publishers, tiny products."""

from decisionengine.framework.modules import Publisher, Source, Transform


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


def channel(schedule: float, **task_manager) -> dict:
    """The benchmark channel as a channel-file dict."""
    here = "benchmarks.noop_modules"
    return {
        "sources": {f"src{i}": {"module": here, "name": f"Source{i}", "schedule": schedule} for i in (1, 2, 3)},
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
