"""produces / consumes / supports_config / Parameter: the HEPCloud module contract."""

import pandas as pd
import pytest

from decisionengine.framework.modules import Publisher, Source, Transform
from decisionengine.framework.modules.parameter import NO_DEFAULT, ParameterDefaultWarning
from decisionengine.framework.modules.Publisher import Parameter as PublisherParameter
from decisionengine.framework.modules.Source import Parameter
from decisionengine.framework.modules.Transform import Parameter as TransformParameter


def test_import_paths_give_modules_holding_classes():
    assert Source.Source.__name__ == "Source"
    assert Transform.Transform.__name__ == "Transform"
    assert Publisher.Publisher.__name__ == "Publisher"
    assert Parameter is TransformParameter is PublisherParameter
    for module in (Source, Transform, Publisher):
        assert callable(module.supports_config)
        assert callable(module.describe)
    assert callable(Source.produces) and callable(Transform.produces)
    assert callable(Transform.consumes) and callable(Publisher.consumes)


def test_produces_and_consumes_set_plain_class_dicts():
    @Transform.consumes(foo=pd.DataFrame, n=int)
    @Transform.produces(bar=pd.DataFrame)
    class T(Transform.Transform):
        pass

    assert T._consumes == {"foo": pd.DataFrame, "n": int}
    assert T._produces == {"bar": pd.DataFrame}
    assert type(T._produces) is dict


def test_produces_twice_names_the_class():
    with pytest.raises(RuntimeError, match=r"produces has already been called for class .*Twice"):

        @Source.produces(a=int)
        @Source.produces(b=int)
        class Twice(Source.Source):
            pass


def test_consumes_twice_names_the_class():
    with pytest.raises(RuntimeError, match=r"consumes has already been called for class .*Again"):

        @Publisher.consumes(a=int)
        @Publisher.consumes(b=int)
        class Again(Publisher.Publisher):
            pass


def test_subclass_of_decorated_class_may_be_decorated():
    @Source.produces(a=int)
    class Base(Source.Source):
        pass

    @Source.produces(b=int)
    class Child(Base):
        pass

    assert Base._produces == {"a": int}
    assert Child._produces == {"b": int}


def test_decorating_a_class_that_assigned_produces_itself_is_an_error():
    with pytest.raises(RuntimeError, match="Assigned"):

        @Source.produces(a=int)
        class Assigned(Source.Source):
            _produces = {"b": int}


def test_parameter_type_inferred_from_default():
    assert Parameter("n", default=3).type is int
    assert Parameter("ratio", default=0.5).type is float
    assert Parameter("names", default=["a"]).type is list
    assert Parameter("anything").type is None


def test_parameter_conflicting_type_is_runtime_error():
    with pytest.raises(RuntimeError, match=r"'multiplier'.*conflicts"):
        Parameter("multiplier", type=int, default="two")
    # a default of another type that converts is converted, as the reference does (with a warning)
    with pytest.warns(ParameterDefaultWarning, match="'flag'"):
        assert Parameter("flag", type=int, default=True).default == 1


def test_parameter_int_default_fits_float():
    assert Parameter("ratio", type=float, default=1).type is float


def test_parameter_without_default_is_required():
    assert Parameter("x", type=str).required
    assert Parameter("x", type=str).default is None
    assert Parameter("x", type=str, default=NO_DEFAULT).required
    assert not Parameter("x", default=None).required
    assert not Parameter("x", default=0).required


def test_supports_config_collects_parameters_and_inherits():
    @Source.supports_config(Parameter("a", default=1), Parameter("b", type=str))
    class Base(Source.Source):
        pass

    @Source.supports_config(Parameter("c", default=2.0))
    class Child(Base):
        pass

    assert list(Base._supported_config) == ["a", "b"]
    assert list(Child._supported_config) == ["a", "b", "c"]


def test_supports_config_rejects_duplicates_and_non_parameters():
    with pytest.raises(RuntimeError, match="declared twice: a"):
        Source.supports_config(Parameter("a", default=1), Parameter("a", default=2))
    with pytest.raises(TypeError):
        Source.supports_config("a")
