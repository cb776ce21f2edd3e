"""What a dead server leaves, and what the next one clears: never anything of a live one."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import sqlalchemy as sa

from decisionengine.framework.dataspace.ownership import FileLock, clear_stale_lock_files, clear_stale_locks
from decisionengine.framework.engine import leftovers


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_metrics_directory_is_named_after_its_server(tmp_path):
    path = leftovers.new_metrics_directory(str(tmp_path))
    assert re.fullmatch(rf"de-metrics-{os.getpid()}-[a-z0-9_]+", os.path.basename(path))
    assert os.path.isdir(path)


def test_only_the_metrics_directories_of_dead_servers_are_removed(tmp_path):
    gone = dead_pid()
    dead = tmp_path / f"de-metrics-{gone}-abcd1234"
    (dead / "sub").mkdir(parents=True)
    (dead / "counter_1.db").write_bytes(b"x")
    live = tmp_path / f"de-metrics-{os.getppid()}-abcd1234"  # a live process (pytest's parent)
    mine = tmp_path / f"de-metrics-{os.getpid()}-abcd1234"
    unnamed = tmp_path / "de-metrics-abcd1234"  # an older server's: no pid to judge by
    for path in (live, mine, unnamed):
        path.mkdir()
    not_a_directory = tmp_path / f"de-metrics-{gone}-file0000"
    not_a_directory.write_text("x")
    link = tmp_path / f"de-metrics-{gone}-link0000"
    link.symlink_to(live)

    cleared = leftovers.clear_dead_metrics_directories(str(tmp_path))

    assert cleared == [leftovers.Leftover("the metrics directory of a dead server", str(dead), gone)]
    assert not dead.exists()
    assert live.is_dir() and mine.is_dir() and unnamed.is_dir()
    assert not_a_directory.is_file() and link.is_symlink()


def test_a_missing_temporary_directory_clears_nothing(tmp_path):
    assert leftovers.clear_dead_metrics_directories(str(tmp_path / "missing")) == []


def test_lock_files_nobody_holds_are_removed_and_held_ones_kept(tmp_path):
    database = str(tmp_path / "ds.sqlite")
    held = FileLock(database, "alive")
    assert held.acquire()
    stale = tmp_path / "ds.sqlite.dead.lock"
    stale.write_text("12345\n")  # what a killed channel process leaves: the file, no lock
    other = tmp_path / "other.sqlite.dead.lock"  # another database's: not ours to judge
    other.write_text("1\n")
    try:
        assert clear_stale_lock_files(database) == [str(stale)]
        assert not stale.exists()
        assert os.path.exists(held.path) and held.held()
        assert other.exists()
        taken = FileLock(database, "dead")  # the channel is free to take again
        assert taken.acquire()
        taken.release()
    finally:
        held.release()
    assert clear_stale_lock_files(database) == []


def test_a_lock_file_behind_a_symlink_is_left_alone(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("x")
    (tmp_path / "ds.sqlite.odd.lock").symlink_to(target)
    assert clear_stale_lock_files(str(tmp_path / "ds.sqlite")) == []
    assert target.exists()


def test_only_sqlite_files_have_lock_files_to_clear(tmp_path):
    (tmp_path / "ds.sqlite.x.lock").write_text("")
    assert clear_stale_locks(sa.create_engine("sqlite://")) == []
    assert clear_stale_locks(sa.create_engine(f"sqlite:///{tmp_path / 'ds.sqlite'}")) == [
        str(tmp_path / "ds.sqlite.x.lock")
    ]
