"""Channel-file builders for the configuration tests."""

import json
import pathlib

FIX = "tests.fixtures.modules"
LOGIC_ENGINE = "decisionengine.framework.logicengine.LogicEngine"


def source(produces, value=1, **extra):
    return {"module": f"{FIX}.ConfigurableSource", "parameters": {"produces": produces, "value": value}, **extra}


def transform(consumes, produces):
    return {"module": f"{FIX}.ConfigurableTransform", "parameters": {"consumes": consumes, "produces": produces}}


def publisher(consumes=()):
    return {"module": f"{FIX}.ConfigurablePublisher", "parameters": {"consumes": list(consumes)}}


def logic_engine(facts, rules):
    return {"module": LOGIC_ENGINE, "parameters": {"facts": facts, "rules": rules}}


def write_channel(directory: pathlib.Path, name: str, config) -> pathlib.Path:
    path = directory / f"{name}.jsonnet"
    path.write_text(config if isinstance(config, str) else json.dumps(config, indent=2))
    return path
