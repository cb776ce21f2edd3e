"""Header, Metadata and ProductRetriever: the records that travel with every product."""

import time

import pandas as pd
import pytest

from decisionengine.framework.dataspace.datablock import Header, InvalidMetadataError, Metadata, ProductRetriever


def test_header_defaults_and_validity():
    before = time.time()
    header = Header("TM-1")
    assert header.required_keys == {
        "taskmanager_id",
        "create_time",
        "expiration_time",
        "scheduled_create_time",
        "creator",
        "schema_id",
    }
    assert Header.default_data_lifetime == 1800
    assert header["taskmanager_id"] == "TM-1"
    assert header["creator"] == "module"
    assert header["schema_id"] is None
    assert before <= header["create_time"] <= time.time()
    assert header["expiration_time"] == header["create_time"] + 1800
    assert header.is_valid()
    del header["creator"]
    assert not header.is_valid()


def test_header_explicit_values():
    header = Header("TM", create_time=100, expiration_time=200, scheduled_create_time=50, creator="src", schema_id=3)
    assert dict(header) == {
        "taskmanager_id": "TM",
        "create_time": 100,
        "expiration_time": 200,
        "scheduled_create_time": 50,
        "creator": "src",
        "schema_id": 3,
    }


def test_metadata_states():
    metadata = Metadata("TM")
    assert Metadata.valid_states == {"NEW", "START_BACKUP", "METADATA_UPDATE", "END_CYCLE"}
    assert Metadata.required_keys == {
        "taskmanager_id",
        "state",
        "generation_id",
        "generation_time",
        "missed_update_count",
    }
    assert metadata["state"] == "NEW"
    assert metadata["missed_update_count"] == 0
    assert metadata.is_valid()
    metadata.set_state("END_CYCLE")
    assert metadata["state"] == "END_CYCLE"
    with pytest.raises(InvalidMetadataError, match="'BOGUS'"):
        metadata.set_state("BOGUS")
    with pytest.raises(InvalidMetadataError, match="'DONE'"):
        Metadata("TM", state="DONE")


def test_product_retriever_reads_a_plain_dict():
    jobs = pd.DataFrame({"a": [1]})
    retriever = ProductRetriever("jobs", pd.DataFrame, "JobSource")
    assert retriever({"jobs": jobs}) is jobs
    assert "jobs" in str(retriever) and "JobSource" in str(retriever)
    with pytest.raises(KeyError, match="'jobs'"):
        retriever({})
    with pytest.raises(TypeError, match="product 'jobs' is a dict, expected DataFrame"):
        retriever({"jobs": {}})
    assert ProductRetriever("anything", None, None)({"anything": 5}) == 5
