"""``Parameter``: one configuration parameter a module declares with ``supports_config``.

The declarations drive three things: ``--describe`` and ``--config-template`` output, and the
parameter checks made when a channel is validated (see
:mod:`decisionengine.framework.config.parameters`).
"""

from __future__ import annotations

import types
import typing
from typing import Any


class _NoDefault:
    """Marks a parameter declared without a default: it is required."""

    _instance: _NoDefault | None = None

    def __new__(cls) -> _NoDefault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __reduce__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


def type_name(declared: Any) -> str:
    """A readable name for a declared type (``int``, ``list[str]``, ``int | float``, ``any``)."""
    if declared is None:
        return "any"
    if isinstance(declared, type) and not isinstance(declared, types.GenericAlias):
        return declared.__name__
    return str(declared).replace("typing.", "")


def matches_type(value: Any, declared: Any) -> bool:
    """Does ``value`` fit ``declared``?

    ``None`` (undeclared) accepts anything; an ``int`` is accepted where ``float`` is
    declared (JSON and jsonnet do not distinguish ``1`` from ``1.0``), but a ``bool`` is
    never taken for a number.  Generic aliases (``list[str]``) and unions are checked on
    their outer types only.
    """
    if declared is None or declared is Any:
        return True
    origin = typing.get_origin(declared)
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, arg) for arg in typing.get_args(declared))
    if origin is not None:
        declared = origin
    if not isinstance(declared, type):
        return True
    if isinstance(value, bool) and declared is not bool and declared is not object:
        return False
    if declared is float and isinstance(value, int):
        return True
    return isinstance(value, declared)


class Parameter:
    """A module configuration parameter.

    ``type`` is inferred from ``default`` when not given; giving both with a default that is
    not of that type is a ``RuntimeError`` (an ``int`` default is fine for ``float``).  A
    parameter declared without ``default`` is *required* (``required`` is True and
    ``default`` reads None); ``default=None`` given explicitly declares an optional
    parameter whose default is ``None``.
    """

    def __init__(self, name: str, type: Any = None, default: Any = NO_DEFAULT, comment: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise RuntimeError(f"a Parameter needs a non-empty name, got {name!r}")
        self.name = name
        #: True when declared without a default; ``default`` then reads None (as in HEPCloud's Parameter)
        self.required = default is NO_DEFAULT
        self.default = None if self.required else default
        self.comment = comment
        has_value = default is not NO_DEFAULT and default is not None
        if type is None:
            self.type = builtin_type(default) if has_value else None
        else:
            if has_value and not matches_type(default, type):
                raise RuntimeError(
                    f"The specified type {type_name(type)!r} for parameter {name!r} conflicts with "
                    f"the type of the default value {default!r} ({builtin_type(default).__name__})"
                )
            self.type = type

    def __repr__(self) -> str:
        parts = [repr(self.name), f"type={type_name(self.type)}"]
        if not self.required:
            parts.append(f"default={self.default!r}")
        if self.comment:
            parts.append(f"comment={self.comment!r}")
        return f"Parameter({', '.join(parts)})"

    def describe(self) -> str:
        """One line for ``--describe``: name, type, default or 'required', comment."""
        default = "required" if self.required else f"default: {self.default!r}"
        comment = f"  # {self.comment}" if self.comment else ""
        return f"{self.name} ({type_name(self.type)}, {default}){comment}"


def builtin_type(value: Any) -> type:
    """The type a default value declares (exact class)."""
    return value.__class__
