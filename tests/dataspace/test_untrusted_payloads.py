"""A payload planted in the database cannot run code, on SQLite and on PostgreSQL.

A normal generation is written through DataBlock, then one product's stored payload is
overwritten in SQL with a zstandard-compressed pickle that would create a marker file
(what anyone who can write to the database can do).  Every read path refuses that
product with an error naming channel, generation, product and the refused global; the
marker never appears; the generation's other products still read.

A payload of another pandas major version (pandas 3's ``str`` dtype, which pandas 2
cannot represent) is not refused but cannot be rebuilt: a ``CorruptPayloadError`` that
names the product and says why.
"""

from __future__ import annotations

import pathlib
import pickle
import zlib

import numpy as np
import pandas as pd
import pytest

from decisionengine.framework.dataspace import unpickling
from decisionengine.framework.dataspace.datablock import DataBlock, Header
from decisionengine.framework.dataspace.datasources.sqlalchemy_ds import SQLAlchemyDS
from decisionengine.framework.dataspace.dataspace import (
    CorruptPayloadError,
    DataSpace,
    DataSpaceConfigurationError,
    UntrustedPayloadError,
)
from tests.conftest import global_config
from tests.fixtures import payloads
from tests.fixtures.trusted_payloads import Level, Reading

CHANNEL = "planted_channel"
JOBS = pd.DataFrame({"site": ["a", "b", "c"], "cores": [1, 2, 3], "load": [0.5, 0.25, 0.125]})
OTHERS = {"count": 42, "info": {"sites": ["a", "b"], "ok": True}}
TRUSTED = "tests.fixtures.trusted_payloads"
PANDAS_3_PAYLOADS = pathlib.Path(__file__).parent / "data" / "payloads-pandas-3.1.1-numpy-2.4.6.zlib"


def write_generation(space: DataSpace) -> DataBlock:
    block = DataBlock(space, CHANNEL)
    tm = block.taskmanager_id
    with block.transaction():
        block.put("jobs", JOBS, Header(tm))
        for key, value in OTHERS.items():
            block.put(key, value, Header(tm))
    return block


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "the planted payload ran"


@pytest.fixture
def planted(dataspace, db_url, marker):
    block = write_generation(dataspace)
    assert dataspace.get_dataproduct(block.sequence_id, 1, "jobs").equals(JOBS)
    payloads.plant(db_url, CHANNEL, 1, "jobs", payloads.zstd(payloads.os_system(marker)))
    return block


READS = {
    "DataSpace.get_dataproduct": lambda space, block: space.get_dataproduct(block.sequence_id, 1, "jobs"),
    "DataSpace.get_dataproduct by id": lambda space, block: space.get_dataproduct(block.taskmanager_id, 1, "jobs"),
    "DataSpace.get_datablock": lambda space, block: space.get_datablock(block.sequence_id, 1),
    "DataSpace.get_dataproducts": lambda space, block: space.get_dataproducts(block.sequence_id, "jobs"),
    "DataSpace.iter_products": lambda space, block: list(space.iter_products(block.sequence_id)),
    "DataSpace.latest_generation": lambda space, block: space.latest_generation(CHANNEL),
    "DataSpace.latest_generation(keys)": lambda space, block: space.latest_generation(CHANNEL, ["jobs"]),
    "DataBlock[key]": lambda space, block: block["jobs"],
    "DataBlock.get": lambda space, block: block.get("jobs"),
    "a new DataBlock": lambda space, block: DataBlock(space, CHANNEL, block.taskmanager_id, 1)["jobs"],
    "a new DataSpace": lambda space, block: DataSpace(space.config).get_dataproduct(block.sequence_id, 1, "jobs"),
}


@pytest.mark.parametrize("read", list(READS))
def test_every_read_path_refuses_the_planted_product(dataspace, planted, marker, read):
    with pytest.raises(UntrustedPayloadError) as info:
        READS[read](dataspace, planted)
    message = str(info.value)
    assert info.value.refused == "posix.system"
    assert f"product 'jobs' of generation 1 of channel '{CHANNEL}'" in message
    assert planted.taskmanager_id in message
    assert "posix.system" in message and "dataspace.trusted_modules" in message
    assert not marker.exists()
    # the generation's other products still read, one by one
    for key, value in OTHERS.items():
        assert dataspace.get_dataproduct(planted.sequence_id, 1, key) == value
        assert planted[key] == value
        assert [item["value"] for item in dataspace.iter_products(planted.sequence_id, key)] == [value]
    assert dataspace.latest_generation(CHANNEL, list(OTHERS)).products == OTHERS
    assert planted.keys() == ["count", "info", "jobs"]  # keys, headers and metadata need no payload
    assert planted.get_header("jobs")["creator"] == "module"


def test_payloads_in_the_reference_format_read_back(dataspace, db_url):
    """zlib and plain pickles, protocol 2, numpy 1's and pandas 1's module names: what the
    reference Decision Engine wrote, planted the same way, reads through every path."""
    block = write_generation(dataspace)
    frame = pd.DataFrame({"f": np.linspace(0, 1, 4), "i": np.arange(4), "s": list("abcd")})
    old = pickle.dumps(frame, 2).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    old = old.replace(b"cpandas\nDataFrame\n", b"cpandas.core.frame\nDataFrame\n")
    payloads.plant(db_url, CHANNEL, 1, "jobs", zlib.compress(old, 9))
    payloads.plant(db_url, CHANNEL, 1, "info", pickle.dumps({"plain": [1, 2]}, 4))
    assert b"cnumpy.core.multiarray\n" in old and b"cpandas.core.frame\n" in old
    pd.testing.assert_frame_equal(block["jobs"], frame)
    assert dataspace.get_datablock(block.sequence_id, 1)["info"] == {"plain": [1, 2]}
    pd.testing.assert_frame_equal(dataspace.latest_generation(CHANNEL).products["jobs"], frame)


def test_a_frame_with_strings_pandas_3_wrote(dataspace, db_url):
    """A frame with a string index and column names, as pandas 3.1 pickled it (its ``str``
    dtype), planted as a product: pandas 3 reads it back; pandas 2, which cannot represent
    that dtype, reports a ``CorruptPayloadError`` naming the product and the reason (one
    pandas major version per DataSpace), not the raw ``TypeError`` of pandas' constructor.
    The generation's other products still read."""
    block = write_generation(dataspace)
    archive = unpickling.loads(zlib.decompress(PANDAS_3_PAYLOADS.read_bytes()))
    payloads.plant(db_url, CHANNEL, 1, "jobs", archive["payloads"]["DataFrame[str index]@5"])
    if int(pd.__version__.partition(".")[0]) >= 3:
        pd.testing.assert_frame_equal(block["jobs"], pd.DataFrame({"a": [1, 2]}, index=["x", "y"]))
        return
    for read in (lambda: dataspace.get_dataproduct(block.sequence_id, 1, "jobs"), lambda: block["jobs"]):
        with pytest.raises(CorruptPayloadError) as info:
            read()
        message = str(info.value)
        assert f"product 'jobs' of generation 1 of task manager '{CHANNEL}' ({block.taskmanager_id})" in message
        assert "cannot be decoded: UnpicklingError: the installed pandas 2." in message
        assert "TypeError: StringDtype.__init__()" in message
        assert "a DataSpace holds the products of one pandas major version" in message
    assert dataspace.get_dataproduct(block.sequence_id, 1, "count") == OTHERS["count"]


def test_trusted_modules_in_the_global_config_admit_their_classes(db_url):
    values = {"reading": Reading("a", 1.5), "level": Level.HIGH}
    with DataSpace(global_config(db_url, trusted_modules=[TRUSTED])) as trusting:
        block = DataBlock(trusting, CHANNEL)
        with block.transaction():
            for key, value in values.items():
                block.put(key, value, Header(block.taskmanager_id))
        assert trusting.get_datablock(block.sequence_id, 1) == values
    with DataSpace(global_config(db_url)) as default:
        with pytest.raises(UntrustedPayloadError) as info:
            default.get_dataproduct(block.sequence_id, 1, "reading")
        assert info.value.refused == f"{TRUSTED}.Reading"
        with pytest.raises(UntrustedPayloadError, match=r"trusted_payloads\.Level"):
            default.get_dataproduct(block.sequence_id, 1, "level")
    direct = SQLAlchemyDS({"url": db_url})  # a data source built on its own trusts no module
    try:
        with pytest.raises(UntrustedPayloadError, match=r"trusted_payloads\.Reading"):
            direct.get_dataproduct(block.sequence_id, 1, "reading")
    finally:
        direct.close()


@pytest.mark.parametrize(
    ("trusted", "complaint"),
    [(["os"], "'os' cannot be trusted"), (["not a module"], "not a module name"), ("mymodule", "must be a list")],
)
def test_invalid_trusted_modules_are_configuration_errors(db_url, trusted, complaint):
    with pytest.raises(DataSpaceConfigurationError) as info:
        DataSpace(global_config(db_url, trusted_modules=trusted))
    assert "dataspace.trusted_modules" in str(info.value) and complaint in str(info.value)
