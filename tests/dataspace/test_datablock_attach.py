"""DataBlock.attach: a product the block answers from memory and never writes."""

import pytest

from decisionengine.framework.dataspace.datablock import DataBlock, Header


def test_an_attached_product_is_read_but_never_written(dataspace):
    block = DataBlock(dataspace, "attaching")
    tm = block.taskmanager_id
    block.begin()
    block.attach("board", {"a": True}, Header(tm, creator="taskmanager"))
    block.put("numbers", [1, 2], Header(tm))
    assert block["board"] == {"a": True} and block.get_header("board")["creator"] == "taskmanager"
    assert set(block.keys()) == {"board", "numbers"}
    block.commit(keep=True)
    assert block["board"] == {"a": True} and "board" in block
    assert dataspace.get_keys(block.sequence_id, block.generation_id) == ["numbers"]  # not committed
    with pytest.raises(KeyError):
        DataBlock(dataspace, "attaching", tm, generation_id=block.generation_id)["board"]


def test_what_the_block_puts_under_the_same_key_wins(dataspace):
    block = DataBlock(dataspace, "shadowed")
    tm = block.taskmanager_id
    with block.transaction():
        block.attach("status", "attached", Header(tm))
        block.put("status", "put", Header(tm))
        assert block["status"] == "put"
    with pytest.raises(TypeError, match="must be a Header"):
        block.attach("status", "x", {"creator": "me"})
