"""Module construction, retrievers, logger and verify_products."""

import pandas as pd
import pytest
import structlog

from decisionengine.framework.dataspace.datablock import ProductRetriever
from decisionengine.framework.modules import Publisher, Source, Transform
from decisionengine.framework.modules.EmptySource import EmptySource
from decisionengine.framework.modules.Module import Module, verify_products
from tests.fixtures.modules.DirectProduces import ClassLevelSource, InstanceLevelTransform, NoSuperTransform
from tests.fixtures.modules.PublisherNOP import PublisherNOP
from tests.fixtures.modules.RequiresChannelName import RequiresChannelName
from tests.fixtures.modules.SourceWithSampleConfigNOP import SourceWithSampleConfigNOP
from tests.fixtures.modules.TransformNOP import TransformNOP


def test_consumes_gives_each_instance_a_retriever():
    transform = TransformNOP({"channel_name": "test"})
    assert isinstance(transform.foo, ProductRetriever)
    block = {"foo": pd.DataFrame({"col1": ["a"], "col2": [1.5]})}
    assert transform.foo(block) is block["foo"]
    assert transform.transform(block)["bar"]["col2"].tolist() == [1.5]


def test_retriever_checks_type_and_presence():
    transform = TransformNOP({})
    with pytest.raises(TypeError, match="'foo' is a str, expected DataFrame"):
        transform.foo({"foo": "not a frame"})
    with pytest.raises(KeyError, match="'foo'"):
        transform.foo({})


def test_retrievers_without_super_init():
    transform = NoSuperTransform({"channel_name": "c"})
    assert transform.transform({"direct": pd.DataFrame({"x": [1, 2, 3]})}) == {"count": 3}
    assert transform.logger is not None


def test_retrievers_from_instance_level_consumes():
    transform = InstanceLevelTransform({"consumes": ["jobs"], "produces": ["n"]})
    assert transform.jobs({"jobs": [1]}) == [1]
    with pytest.raises(AttributeError):
        _ = transform.not_a_product


def test_construction_with_empty_config():
    source = SourceWithSampleConfigNOP({})
    assert source.multiplier is None
    assert source.channel_name is None
    assert Module({}).parameters == {}


def test_module_init_may_still_require_channel_name():
    with pytest.raises(KeyError, match="channel_name"):
        RequiresChannelName({})
    assert RequiresChannelName({"channel_name": "c1"}).channel == "c1"


def test_logger_bound_with_class_name_and_channel():
    with structlog.testing.capture_logs() as logs:
        TransformNOP({"channel_name": "chan"}).logger.info("hello")
        NoSuperTransform({"channel_name": "other"}).logger.info("hi")
    assert logs[0]["class_name"] == "TransformNOP" and logs[0]["channel"] == "chan"
    assert logs[1]["class_name"] == "NoSuperTransform" and logs[1]["channel"] == "other"


def test_direct_class_level_produces_is_read():
    source = ClassLevelSource({})
    verify_products(source, source.acquire())
    assert ClassLevelSource._produces == {"direct": pd.DataFrame}


def test_empty_source_sets_produces_on_the_instance():
    source = EmptySource({"data_product_name": "placeholder", "channel_name": "c"})
    assert source._produces == {"placeholder": pd.DataFrame}
    products = source.acquire()
    assert list(products) == ["placeholder"] and products["placeholder"].empty
    verify_products(source, products)


def test_verify_products_accepts_matching_products():
    verify_products(SourceWithSampleConfigNOP({"multiplier": 1}), {"foo": pd.DataFrame()})


def test_verify_products_names_missing():
    with pytest.raises(RuntimeError, match="not produced: 'foo'"):
        verify_products(SourceWithSampleConfigNOP({}), {})


def test_verify_products_names_undeclared():
    with pytest.raises(RuntimeError, match="not declared: 'extra'"):
        verify_products(SourceWithSampleConfigNOP({}), {"foo": pd.DataFrame(), "extra": 1})


def test_verify_products_names_wrong_type():
    with pytest.raises(RuntimeError, match="wrong types: 'foo': expected DataFrame, got str"):
        verify_products(SourceWithSampleConfigNOP({}), {"foo": "oops"})


def test_verify_products_reports_all_kinds_at_once():
    @Source.produces(a=int, b=int, c=pd.DataFrame)
    class Three(Source.Source):
        pass

    with pytest.raises(RuntimeError) as info:
        verify_products(Three({}), {"b": 1, "c": [1], "zzz": 2})
    message = str(info.value)
    assert "Three" in message
    assert "not produced: 'a'" in message
    assert "not declared: 'zzz'" in message
    assert "'c': expected DataFrame, got list" in message


def test_verify_products_requires_a_dict():
    with pytest.raises(RuntimeError, match="must return a dict"):
        verify_products(SourceWithSampleConfigNOP({}), [1])


def test_entry_points_and_publisher_shutdown():
    publisher = PublisherNOP({"channel_name": "c"})
    publisher.publish({"bar": pd.DataFrame({"x": [1]})})
    assert len(publisher.published) == 1
    publisher.shutdown()
    assert publisher.stopped
    Publisher.Publisher({}).shutdown()  # default: a no-op
    with pytest.raises(NotImplementedError):
        Source.Source({}).acquire()
    with pytest.raises(NotImplementedError):
        Transform.Transform({}).transform({})


def test_consumed_product_may_not_hide_a_method():
    @Transform.consumes(transform=int)
    class Clash(Transform.Transform):
        pass

    with pytest.raises(RuntimeError, match="'transform'"):
        Clash({})
