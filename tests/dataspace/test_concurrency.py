"""Several processes writing one database at once: no lost and no torn generation."""

import multiprocessing

import pandas as pd

from decisionengine.framework.dataspace.datablock import DataBlock, Header
from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.testing.waiting import eventually

GENERATIONS = 30
PRODUCTS = 5


def frame(generation: int, product: int) -> pd.DataFrame:
    return pd.DataFrame({"generation": [generation] * 200, "product": [product] * 200, "x": range(200)})


def writer(config, name, ready, go):
    """Write GENERATIONS generations of PRODUCTS products, each generation in one transaction."""
    space = DataSpace(config)
    block = DataBlock(space, name)
    ready.set()
    go.wait(30)
    for generation in range(1, GENERATIONS + 1):
        block.generation_id = generation
        with block.transaction():
            for product in range(PRODUCTS):
                block.put(f"p{product}", frame(generation, product), Header(block.taskmanager_id))
    space.close()


def test_two_processes_write_one_database(dataspace, dataspace_config):
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    names = ["writer_a", "writer_b"]
    readies = [ctx.Event() for _ in names]
    processes = [
        ctx.Process(target=writer, args=(dataspace_config, name, ready, go))
        for name, ready in zip(names, readies, strict=True)
    ]
    for process in processes:
        process.start()
    for ready in readies:
        assert ready.wait(60)
    go.set()

    # While they write, every generation a reader can see is complete and consistent.
    observed = 0

    def writers_done_after_a_look() -> bool:
        nonlocal observed
        running = any(p.is_alive() for p in processes)
        for name in names:
            last = dataspace.get_last_generation_id(name)
            if last == 0:
                continue
            block = dataspace.get_datablock(dataspace.get_taskmanager(name)["sequence_id"], last)
            assert sorted(block) == [f"p{i}" for i in range(PRODUCTS)], f"torn generation {last} of {name}"
            for product in range(PRODUCTS):
                assert set(block[f"p{product}"]["generation"]) == {last}
            observed += 1
        return not running

    eventually(writers_done_after_a_look, 120, what="both writers to finish", interval=0, max_interval=0)
    for process in processes:
        process.join(60)
        assert process.exitcode == 0

    assert observed > 0
    for name in names:
        seq = dataspace.get_taskmanager(name)["sequence_id"]
        generations = dataspace.get_generations(seq)
        assert [g["generation_id"] for g in generations] == list(range(1, GENERATIONS + 1))
        assert all(g["products"] == PRODUCTS for g in generations)
        for generation in (1, GENERATIONS):
            pd.testing.assert_frame_equal(dataspace.get_dataproduct(seq, generation, "p3"), frame(generation, 3))
    # Both writers stored the same frames at the same time: each distinct payload exactly once.
    stats = dataspace.storage_stats()
    assert stats["payloads"] == GENERATIONS * PRODUCTS
    assert stats["products"] == 2 * GENERATIONS * PRODUCTS
