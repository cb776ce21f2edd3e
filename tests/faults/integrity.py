"""What every fault test checks afterwards: the committed generations are whole and numbered
once, and publishers acted on committed generations only, each once per run."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable

from decisionengine.framework.dataspace.datablock import DataBlock
from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.taskmanager.TaskManager import DECISION, PUBLISHER_STATUS
from tests.conftest import global_config

#: what every generation of the counting channels holds
COUNTING_PRODUCTS = frozenset({"numbers", "doubled", "total", "de_logicengine_facts", DECISION})


def published_keys(record: pathlib.Path) -> list[str]:
    if not record.exists():
        return []
    return [entry["key"] for entry in map(json.loads, record.read_text().splitlines()) if entry.get("key")]


def assert_whole(
    url: str,
    channel: str,
    record: pathlib.Path | None = None,
    products: Iterable[str] = COUNTING_PRODUCTS,
    repeats: bool = False,
) -> list[int]:
    """Check the channel's generations; returns their numbers.

    With ``record`` (a RecordingPublisher's file): every key published is a committed
    generation's, and every generation whose publishers' status is stored was published.
    ``repeats``: a generation may have been published more than once (a channel killed
    between its commit and its status publishes it again at the next start, by design).
    """
    space = DataSpace(global_config(url))
    try:
        registration = space.get_taskmanager(channel)
        sequence = registration["sequence_id"]
        numbers = [g["generation_id"] for g in space.get_generations(sequence)]
        assert numbers == list(range(1, len(numbers) + 1)), f"generations not numbered once each: {numbers}"
        keys = {}
        for generation in numbers:
            stored = set(space.get_keys(sequence, generation))
            assert set(products) <= stored, f"generation {generation} is not whole: {sorted(stored)}"
            block = DataBlock(space, channel, registration["taskmanager_id"], generation, sequence)
            keys[block[DECISION]["idempotency_key"]] = PUBLISHER_STATUS in stored
        if record is not None:
            published = published_keys(record)
            assert set(published) <= set(keys), "a publisher acted on a generation that was not committed"
            finished = {key for key, has_status in keys.items() if has_status}
            assert finished <= set(published), "a generation with a stored status was never published"
            if not repeats:
                assert len(published) == len(set(published)), "a generation was published twice"
        return numbers
    finally:
        space.close()
