"""A channel file with a bad ``task_manager.placement``, as an operator meets it: ``de-server
--check`` and a real server start name the file, the key and what is wrong, and every
other channel still starts."""

from __future__ import annotations

from tests.engine.server import DEServer, write_channel
from tests.engine.test_server_check import configuration
from tests.engine.test_server_cli import de_server
from tests.taskmanager.channels import module

#: channel -> (its task_manager.placement, the key and what is wrong, as the error says them)
BAD_PLACEMENTS = {
    "wrong_type": ("de-gpu-1", "task_manager.placement: expected an object with prefer and/or avoid, got 'de-gpu-1'"),
    "unknown_key": (
        {"prefer": ["de-gpu-1"], "pin": ["de-edge"]},
        "task_manager.placement: unknown key(s) pin (expected prefer, avoid)",
    ),
    "empty_name": ({"prefer": ["de-gpu-1", ""]}, "task_manager.placement.prefer: expected a list of server names"),
    "not_a_list": ({"avoid": 3}, "task_manager.placement.avoid: expected a list of server names, got 3"),
    "both": (
        {"prefer": ["de-gpu-1"], "avoid": ["de-gpu-1"]},
        "task_manager.placement: de-gpu-1 both preferred and avoided",
    ),
}


def channel(placement=None):
    config = {"sources": {"s": module("CountingSource", schedule=0.3)}}
    if placement is not None:
        config["task_manager"] = {"placement": placement}
    return config


def test_bad_placement_is_named_by_check_with_its_file_and_key(tmp_path):
    root = configuration(tmp_path)
    channels = root / "config.d"
    write_channel(channels, "good", channel({"prefer": ["de-gpu-1"], "avoid": "de-edge"}))
    for name, (placement, _) in BAD_PLACEMENTS.items():
        write_channel(channels, name, channel(placement))

    result = de_server("--check", "--config", str(root))

    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[:-1]}
    assert lines["good"].split()[1] == "ok"
    for name, (_, error) in BAD_PLACEMENTS.items():
        assert str(channels / f"{name}.jsonnet") in lines[name], lines[name]
        assert error in lines[name], lines[name]
    assert (
        result.stdout.splitlines()[-1]
        == f"configuration invalid: {len(BAD_PLACEMENTS)} of {len(BAD_PLACEMENTS) + 1} channels cannot run"
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_a_server_starts_every_other_channel_and_names_each_bad_placement(tmp_path, sqlite_url):
    configs = {"good": channel({"prefer": ["de-gpu-1"]})}
    configs.update({name: channel(placement) for name, (placement, _) in BAD_PLACEMENTS.items()})
    one = DEServer(tmp_path, sqlite_url, configs)
    try:
        one.start()
        one.wait_for_generation("good", 1, 60)
        status = one.wait_for(
            lambda s: all(
                c["state"] == "ERROR" and not c["process_alive"]
                for c in s["channels"]
                if c["channel"] in BAD_PLACEMENTS
            ),
            60,
            "every bad channel in ERROR, its process gone (it exits just after saying so)",
        )
        by_name = {channel["channel"]: channel for channel in status["channels"]}
        log = one.log()
    finally:
        assert one.stop() == 0
    assert by_name["good"]["state"] in ("STEADY", "ACTIVE"), by_name["good"]
    for name, (_, error) in BAD_PLACEMENTS.items():
        # the channel's process finds it when it prepares the channel, and refuses to run it
        path = str(one.channel_dir / f"{name}.jsonnet")
        status = by_name[name]
        assert status["state"] == "ERROR" and not status["process_alive"], status
        assert path in status["last_error"] and error in status["last_error"], status
        logged = [line for line in log.splitlines() if "channel configuration is invalid" in line and name in line]
        assert logged and path in logged[0] and error in logged[0], logged
