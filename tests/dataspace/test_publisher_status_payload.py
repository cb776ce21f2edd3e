"""publisher_status through the restricted unpickler: a stored board reads back; a payload
naming the class with any other state is refused, or harmless; nothing else of its module
is admitted."""

import datetime
import pickle
import threading

import pandas as pd
import pytest

from decisionengine.framework.dataspace import allowlist, unpickling
from decisionengine.framework.dataspace.datablock import DataBlock, zdumps, zloads
from decisionengine.framework.dataspace.dataspace import DataSpaceError, UntrustedPayloadError
from decisionengine.framework.taskmanager.PublisherStatus import PublisherStatus, PublisherStatusBoard
from decisionengine.framework.taskmanager.states import State
from decisionengine.framework.taskmanager.TaskManager import PUBLISHER_STATUS, TaskManager
from tests.fixtures import payloads
from tests.taskmanager.channels import counting_channel, plan_from

MODULE = "decisionengine.framework.taskmanager.PublisherStatus"
SINCE = datetime.datetime(2024, 5, 1, 12, 0, 0)


class Crafted:
    """Pickles as whatever ``__reduce__`` tuple it is given (what a writer of the database can make)."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


CLASS = b"c" + MODULE.encode() + b"\nPublisherStatus\n"  # GLOBAL
MAKE = {
    "newobj": CLASS + b")\x81",  # cls.__new__(cls): protocols 2 and later
    "reconstructor": b"ccopyreg\n_reconstructor\n(" + CLASS + b"c__builtin__\nobject\nNtR",  # protocols 0, 1
}


def as_status(state, make="newobj"):
    """A pickle making a PublisherStatus without calling it, then giving it ``state`` (BUILD)."""
    return payloads.PROTO2 + MAKE[make] + payloads.opcodes(state) + b"b."


def a_board():
    board = PublisherStatusBoard(["a", "b"])
    board.update("b", False)
    details = pd.DataFrame(
        [
            {"publisher": "a", "ran": True, "succeeded": True, "seconds": 0.25, "error": None},
            {"publisher": "b", "ran": True, "succeeded": False, "seconds": 0.5, "error": "RuntimeError: no"},
        ]
    )
    return board.frozen(details)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_stored_board_reads_back(protocol):
    status = a_board()
    back = unpickling.loads(pickle.dumps(status, protocol))
    assert type(back) is PublisherStatus and back == status
    assert not back.is_enabled("b") and back.state("b").since == status.state("b").since
    pd.testing.assert_frame_equal(back.details, status.details)
    assert zloads(zdumps(status)) == status


def test_what_the_reference_stored_reads_back():
    """The reference's PublisherStatus pickled its ``_status`` only (no details)."""
    back = unpickling.loads(as_status({"_status": {"a": (True, SINCE), "b": (False, SINCE)}}))
    assert back.is_enabled("a") and not back.is_enabled("b") and back.state("b").since == SINCE
    assert back.details.empty


@pytest.mark.parametrize(
    "state",
    [
        ["not", "a", "dict"],
        {"_status": [("a", (True, SINCE))]},
        {"_status": {"a": ("yes", SINCE)}},
        {"_status": {"a": (1, SINCE)}},
        {"_status": {"a": (True, 1714564800)}},
        {"_status": {"a": (True, "2024-05-01")}},
        {"_status": {"a": (True, pd.Timestamp(SINCE))}},
        {"_status": {"a": [True, SINCE]}},
        {"_status": {"a": (True, SINCE, "extra")}},
        {"_status": {7: (True, SINCE)}},
        {"_status": {}, "_details": "a table"},
        {"_status": {}, "_details": pd.DataFrame({"x": [1]})},
    ],
    ids=[
        "state not a dict",
        "status not a dict",
        "enabled a string",
        "enabled an int",
        "since a number",
        "since a string",
        "since a Timestamp",
        "entry a list",
        "entry too long",
        "name not a string",
        "details a string",
        "details without the columns",
    ],
)
def test_odd_states_are_refused(state):
    for make in MAKE:
        with pytest.raises(pickle.UnpicklingError, match="publisher status"):
            unpickling.loads(as_status(state, make))


def test_calling_the_class_with_odd_arguments_is_refused():
    raw = pickle.dumps(Crafted(PublisherStatus, ({"a": ("yes", SINCE)},)), 2)
    with pytest.raises(pickle.UnpicklingError, match="enabled must be a bool"):
        unpickling.loads(raw)
    raw = pickle.dumps(Crafted(PublisherStatus, ({"a": (True, SINCE)}, "details")), 2)
    with pytest.raises(pickle.UnpicklingError, match="details: a DataFrame expected"):
        unpickling.loads(raw)


def test_what_is_not_refused_is_harmless():
    # made without any state: an empty status, not an object missing its attributes
    bare = unpickling.loads(payloads.PROTO2 + MAKE["newobj"] + b".")
    assert bare.publishers == [] and bare.details.empty and bare.to_frame().empty
    # keys the class does not know (a newer version's, or an attacker's) are never set
    odd = unpickling.loads(as_status({"_status": {}, "is_enabled": "x", "__class__": "y", "_extra": 1}))
    assert type(odd) is PublisherStatus and callable(odd.is_enabled) and not hasattr(odd, "_extra")


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (MODULE, "PublisherStatusBoard"),
        (MODULE, "PublisherState"),
        (MODULE, "_checked_status"),
        (MODULE, "tabulate"),
        (MODULE, "pd"),
        ("decisionengine.framework.taskmanager.TaskManager", "TaskManager"),
        ("decisionengine.framework.taskmanager.TaskManager", "PublisherStatus"),  # a re-export: not its home
    ],
)
def test_nothing_else_of_the_framework_is_admitted(module, name):
    with pytest.raises(UntrustedPayloadError) as info:
        unpickling.loads(payloads.call(module, name))
    assert info.value.refused == f"{module}.{name}"


def test_state_naming_other_globals_still_goes_through_the_allow_list(tmp_path):
    marker = tmp_path / "pwned"
    state = {"_status": {"a": (True, SINCE)}, "_details": payloads.Reduce(open, str(marker), "w")}
    with pytest.raises(UntrustedPayloadError):
        unpickling.loads(as_status(state))
    assert not marker.exists()


def test_a_framework_class_must_check_its_state(monkeypatch):
    """An entry whose class does not define ``__setstate__`` itself is not admitted by its name."""
    monkeypatch.setitem(allowlist.FRAMEWORK_CLASSES, (MODULE, "PublisherStatusBoard"), "no check of its own")
    with pytest.raises(UntrustedPayloadError):
        unpickling.UnpicklePolicy().find(MODULE, "PublisherStatusBoard")
    assert unpickling.UnpicklePolicy().find(MODULE, "PublisherStatus") is PublisherStatus


def run(plan, dataspace):
    tm = TaskManager(plan, dataspace)
    thread = threading.Thread(target=tm.run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive() and tm.state.state is State.SHUTDOWN, tm.status()
    return tm


def test_a_planted_board_is_refused_by_readers_and_the_channel_starts_fresh(db_url, tmp_path):
    """Someone who can write the database replaces a stored board with one of odd state:
    readers get an error naming the product, not the object; the channel's next start
    logs it and begins with every publisher enabled."""
    from decisionengine.framework.dataspace.dataspace import DataSpace
    from tests.conftest import global_config

    space = DataSpace(global_config(db_url))
    try:
        plan = plan_from(counting_channel(str(tmp_path / "r.jsonl"), max_generations=1), "planted")
        first = run(plan, space)
        assert type(DataBlock(space, "planted", first.taskmanager_id, generation_id=1)[PUBLISHER_STATUS]) is (
            PublisherStatus
        )
        payloads.plant(db_url, "planted", 1, PUBLISHER_STATUS, as_status({"_status": {"recorder": ("no", 0)}}))
        with pytest.raises((DataSpaceError, pickle.UnpicklingError)):
            DataBlock(space, "planted", first.taskmanager_id, generation_id=1)[PUBLISHER_STATUS]
        again = run(plan, space)
        assert again.generation_id == 2
        assert DataBlock(space, "planted", again.taskmanager_id, generation_id=2)[PUBLISHER_STATUS].is_enabled(
            "recorder"
        )
    finally:
        space.close()
