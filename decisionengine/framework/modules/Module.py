"""``Module``: the base of every source, transform, logic engine and publisher.

What a module gets from the framework, whether or not its ``__init__`` calls ``super()``:

* ``self.logger``: a structlog logger bound with ``class_name`` and ``channel``;
* one ``ProductRetriever`` attribute per consumed product (``self.jobs(data_block)``),
  made in ``__new__`` from the class's ``_consumes``.  A module that assigns ``_consumes``
  on the instance in its ``__init__`` gets its retrievers on first attribute access.

``verify_products(module, data)`` checks what a module returned against its ``_produces``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from decisionengine.framework.dataspace.datablock import ProductRetriever
from decisionengine.framework.modules.decorators import declared_products
from decisionengine.framework.modules.parameter import matches_type, type_name
from decisionengine.framework.util.logger import get_logger

LOGGER_NAME = "decisionengine"


def _channel_of(config: Any) -> str | None:
    return config.get("channel_name") if isinstance(config, Mapping) else None


def module_logger(cls: type, channel: str | None) -> Any:
    """The structlog logger for instances of ``cls`` running in ``channel``."""
    return get_logger(LOGGER_NAME).bind(class_name=cls.__name__, channel=channel)


class Module:
    """Base class of all decision engine modules.

    ``config`` is the module's ``parameters`` from the channel file plus ``channel_name``.
    An empty dict is a valid config for the base class (modules may require more).

    ``_produces`` and ``_consumes`` start as empty dicts on the base class, as in the
    reference, because real modules test them directly (``if not self._consumes:``).  The
    decorators and modules that declare products *assign* a new dict (on the class, or on
    the instance in ``__init__``); nothing may mutate these shared empty ones.
    """

    _produces: dict[str, Any] = {}
    _consumes: dict[str, Any] = {}

    def __new__(cls, *args: Any, **kwargs: Any) -> Module:
        instance = super().__new__(cls)
        config = args[0] if args else kwargs.get("config", kwargs.get("set_of_parameters"))
        instance.logger = module_logger(cls, _channel_of(config))
        for product, product_type in declared_products(cls, "_consumes").items():
            _check_retriever_name(cls, product)
            setattr(instance, product, ProductRetriever(product, product_type, None))
        return instance

    def __init__(self, set_of_parameters: Mapping[str, Any] | None = None) -> None:
        config = set_of_parameters if set_of_parameters is not None else {}
        self.parameters = config
        self.channel_name = _channel_of(config)
        self.name = type(self).__name__
        self.data_block: Any = None
        self.logger = module_logger(type(self), self.channel_name)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: retrievers for an instance-level ``_consumes``.
        if not name.startswith("_"):
            consumes = self.__dict__.get("_consumes")
            if isinstance(consumes, dict) and name in consumes:
                retriever = ProductRetriever(name, consumes[name], None)
                self.__dict__[name] = retriever
                return retriever
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- HEPCloud compatibility accessors -----------------------------------------------------

    def get_parameters(self) -> Mapping[str, Any]:
        return self.parameters

    def set_data_block(self, data_block: Any) -> None:
        self.data_block = data_block

    def get_data_block(self) -> Any:
        return self.data_block


def _check_retriever_name(cls: type, product: str) -> None:
    """A retriever must not hide a method or attribute of the module class."""
    existing = getattr(cls, product, None)
    if existing is not None and not isinstance(existing, ProductRetriever):
        raise RuntimeError(
            f"{cls.__qualname__} consumes product {product!r}, which would hide the class attribute "
            f"of the same name: rename the product or the attribute"
        )


def verify_products(module: Any, data: Any) -> None:
    """Check the products a module returned against the ``_produces`` it declares.

    Raises ``RuntimeError`` naming every missing, undeclared and wrongly typed product
    (all kinds in one message).  ``module`` may be an instance or a class.
    """
    produces = declared_products(module, "_produces")
    module_name = module.__name__ if isinstance(module, type) else type(module).__name__
    if not isinstance(data, Mapping):
        raise RuntimeError(f"{module_name} must return a dict of products, not {type(data).__name__}")
    missing = [name for name in produces if name not in data]
    undeclared = [name for name in data if name not in produces]
    wrong = [
        f"{name!r}: expected {type_name(produces[name])}, got {type(data[name]).__name__}"
        for name in produces
        if name in data and not matches_type(data[name], produces[name])
    ]
    problems = []
    # The reference's sentences first (scripts and operators match on them), then ours.
    if missing:
        problems.append("The following products were not produced: " + ", ".join(map(repr, missing)))
    if undeclared:
        problems.append("The following products were not declared: " + ", ".join(map(repr, undeclared)))
    if wrong:
        problems.append("The following products have the wrong types: " + "; ".join(wrong))
    if problems:
        raise RuntimeError("\n".join(problems) + f" (products returned by {module_name})")
