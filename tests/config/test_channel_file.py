"""The structure of a channel file: errors name the file, the key path and what was expected."""

import pytest

from decisionengine.framework.config.channel_file import read_channel_file
from decisionengine.framework.config.errors import ConfigError
from tests.config.helpers import source, write_channel


def problems(tmp_path, config):
    path = write_channel(tmp_path, "chan", config)
    with pytest.raises(ConfigError) as info:
        read_channel_file(path)
    assert str(info.value).startswith(f"{path}: ")
    return info.value.problems


def test_minimal_channel_defaults(tmp_path):
    config = read_channel_file(write_channel(tmp_path, "jobs", {"sources": {"s": {"module": "m"}}}))
    assert config.name == "jobs"
    entry = config.sources["s"]
    assert (entry.module, entry.name, entry.parameters) == ("m", None, {})
    assert (entry.schedule, entry.retries, entry.retry_interval) == (300, 0, 10)
    assert config.transforms == {} and config.publishers == {}
    assert config.logicengines is None
    assert config.task_manager == {}


def test_channel_name_overrides_file_name_and_task_manager_passes_through(tmp_path):
    config = read_channel_file(
        write_channel(tmp_path, "file", {"channel_name": "real", "task_manager": {"data_TO": 60, "anything": [1]}})
    )
    assert config.name == "real"
    assert config.task_manager == {"data_TO": 60, "anything": [1]}


def test_source_schedule_forms(tmp_path):
    config = read_channel_file(
        write_channel(
            tmp_path,
            "c",
            {
                "sources": {
                    "a": source(["x"], schedule=12.5, retries=3, retry_interval=2),
                    "b": source(["y"], schedule="*/5 * * * *"),
                }
            },
        )
    )
    assert config.sources["a"].schedule == 12.5 and config.sources["a"].retries == 3
    assert config.sources["b"].schedule == "*/5 * * * *"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"sources": []}, "sources: expected an object, got []"),
        ({"sources": {"s": {}}}, "sources.s.module: required, expected a string"),
        ({"sources": {"s": {"module": 7}}}, "sources.s.module: expected a string, got 7"),
        ({"sources": {"s": {"module": "m", "name": 1}}}, "sources.s.name: expected a string, got 1"),
        ({"sources": {"s": {"module": "m", "parameters": [1]}}}, "sources.s.parameters: expected an object"),
        ({"sources": {"s": {"module": "m", "schedule": 0}}}, "sources.s.schedule: expected a number of seconds > 0"),
        ({"sources": {"s": {"module": "m", "schedule": "often"}}}, "sources.s.schedule: expected a number of seconds"),
        ({"sources": {"s": {"module": "m", "schedule": "99 * * * *"}}}, "sources.s.schedule: expected a number"),
        ({"sources": {"s": {"module": "m", "retries": -1}}}, "sources.s.retries: expected an integer >= 0, got -1"),
        ({"transforms": {"t": "module"}}, 'transforms.t: expected an object, got "module"'),
        ({"publishers": {"p": {"module": None}}}, "publishers.p.module: expected a string, got null"),
        ({"channel_name": 3}, "channel_name: expected a string, got 3"),
        ({"task_manager": 3}, "task_manager: expected an object, got 3"),
        ({"sources": {"x": {"module": "m"}}, "publishers": {"x": {"module": "p"}}}, "publishers.x: module key 'x'"),
        (
            {"logicengines": {"a": {"module": "m"}, "b": {"module": "m"}}},
            "logicengines: a channel may have at most one logic engine, found 2: 'a', 'b'",
        ),
    ],
)
def test_structure_errors(tmp_path, config, expected):
    found = problems(tmp_path, config)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


def test_unknown_keys_are_warnings(tmp_path):
    path = write_channel(tmp_path, "c", {"sources": {"s": {"module": "m", "max_attempts": 3}}, "comment": "x"})
    config = read_channel_file(path)
    assert sorted(config.warnings) == [
        f"{path}: comment: unused key (not a decision engine setting; ignored)",
        f"{path}: sources.s.max_attempts: unused key (not a decision engine setting; ignored)",
    ]


def test_empty_logicengines_block_is_kept_distinct_from_absent(tmp_path):
    assert read_channel_file(write_channel(tmp_path, "a", {"logicengines": {}})).logicengines == {}
    assert read_channel_file(write_channel(tmp_path, "b", {})).logicengines is None


def test_non_object_channel(tmp_path):
    with pytest.raises(ConfigError, match=r"\(top level\): expected an object, got list"):
        read_channel_file(write_channel(tmp_path, "c", "[1]"))
