"""The class decorators ``produces``, ``consumes`` and ``supports_config``.

They only set plain class attributes (``_produces``, ``_consumes``: ``{name: type}``;
``_supported_config``: ``{name: Parameter}``), because existing modules also assign those
attributes by hand and the framework must treat both the same way: everything downstream
reads the attributes, never a private registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from decisionengine.framework.modules.parameter import Parameter

C = TypeVar("C", bound=type)


def _product_map(kind: str, names: tuple[Any, ...], typed: dict[str, Any]) -> dict[str, Any]:
    """``{name: type}`` from positional names (type unchecked) and ``name=type`` keywords."""
    products: dict[str, Any] = {}
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{kind}(): product names must be strings, got {name!r}")
        products[name] = None
    for name, product_type in typed.items():
        if name in products:
            raise TypeError(f"{kind}(): product {name!r} is given twice")
        products[name] = product_type
    return products


def _declare(attribute: str, kind: str, products: dict[str, Any]) -> Callable[[C], C]:
    def decorator(cls: C) -> C:
        # Only the class's own namespace counts: a subclass of a decorated class may declare its own.
        if attribute in cls.__dict__:
            # the reference's sentence first, then which class and what to do
            raise RuntimeError(
                f"@{kind} has already been called for class {cls.__qualname__} "
                f"(module {cls.__module__}): declare all its products in one @{kind}(...)"
            )
        setattr(cls, attribute, products)
        return cls

    return decorator


def produces(*product_names: str, **product_types: Any) -> Callable[[C], C]:
    """Declare the products a module returns: ``@produces(jobs=pd.DataFrame)``."""
    return _declare("_produces", "produces", _product_map("produces", product_names, product_types))


def consumes(*product_names: str, **product_types: Any) -> Callable[[C], C]:
    """Declare the products a module reads; each instance gets a retriever per product.

    ``@consumes(jobs=pd.DataFrame)`` lets the module write ``self.jobs(data_block)``.
    """
    return _declare("_consumes", "consumes", _product_map("consumes", product_names, product_types))


def supports_config(*parameters: Parameter) -> Callable[[C], C]:
    """Declare the configuration parameters a module understands.

    Parameters declared by base classes are inherited; a subclass may redeclare one.
    Several ``@supports_config`` on one class add up (the reference merges them too).
    """
    for parameter in parameters:
        if not isinstance(parameter, Parameter):
            raise TypeError(f"supports_config() takes Parameter objects, got {parameter!r}")
    names = [p.name for p in parameters]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuntimeError(f"supports_config(): parameter(s) declared twice: {', '.join(duplicates)}")

    def decorator(cls: C) -> C:
        # Stacked decorators on one class merge, as in the reference (modules write one
        # @supports_config per parameter group); the outer one is applied last and wins a
        # name declared twice.  The dict is always a new one: a base class's stays untouched.
        merged = dict(getattr(cls, "_supported_config", {}) or {})
        merged.update({p.name: p for p in parameters})
        cls._supported_config = merged
        return cls

    return decorator


def declared_products(obj: Any, attribute: str) -> dict[str, Any]:
    """The ``_produces`` or ``_consumes`` map of a class or instance (empty when absent).

    Accepts a dict, or a list/tuple/set of names (some old modules declared names only).
    """
    value = getattr(obj, attribute, None)
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list | tuple | set | frozenset):
        return dict.fromkeys(value)
    raise TypeError(f"{attribute} of {obj!r} must be a dict of {{name: type}}, not {type(value).__name__}")


def supported_parameters(obj: Any) -> dict[str, Parameter]:
    """The ``{name: Parameter}`` a module class (or instance) declared with ``supports_config``."""
    return dict(getattr(obj, "_supported_config", None) or {})
