"""Building channel plans for tests from plain dicts (what a channel file evaluates to)."""

from typing import Any

from decisionengine.framework.config.channel_file import parse_channel_config
from decisionengine.framework.config.validation import validate_channel

MODULES = "tests.fixtures.channel_modules"
LOGIC_ENGINE = "decisionengine.framework.logicengine.LogicEngine"


def module(name: str, schedule: Any = None, **parameters: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"module": MODULES, "name": name, "parameters": parameters}
    if schedule is not None:
        spec["schedule"] = schedule
    return spec


def counting_channel(record: str, **task_manager: Any) -> dict[str, Any]:
    """numbers -> doubled -> total -> a recording publisher, with a logic engine in between."""
    return {
        "sources": {"counter": module("CountingSource", schedule=0.2)},
        "transforms": {
            "doubler": module("DoublingTransform"),
            "summer": module("SummingTransform"),
        },
        "logicengines": {
            "le": {
                "module": LOGIC_ENGINE,
                "name": "LogicEngine",
                "parameters": {
                    "facts": {"big": "total > 100", "has_numbers": "not numbers.empty"},
                    "rules": {
                        "publish": {"expression": "has_numbers", "actions": ["recorder"], "facts": ["published"]},
                        "alarm": {"expression": "big", "actions": [], "false_actions": []},
                    },
                },
            }
        },
        "publishers": {"recorder": module("RecordingPublisher", record=record)},
        "task_manager": task_manager,
    }


def plan_from(raw: dict[str, Any], name: str = "test_channel"):
    return validate_channel(parse_channel_config(raw, name))
