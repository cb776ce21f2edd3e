"""``Parameter``: one configuration parameter a module declares with ``supports_config``.

The declarations drive three things: ``--describe`` and ``--config-template`` output, and the
parameter checks made when a channel is validated (see
:mod:`decisionengine.framework.config.parameters`).
"""

from __future__ import annotations

import types
import typing
import warnings
from typing import Any


class ParameterDefaultWarning(UserWarning):
    """A declared default was converted to the parameter's declared type (see :class:`Parameter`)."""


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

    ``type`` is inferred from ``default`` when not given.  Giving both with a default that is
    not of that type converts the default (``type(default)``, as the reference does) with a
    :class:`ParameterDefaultWarning`; a default that cannot be converted is a ``RuntimeError``
    naming the parameter (an ``int`` default is fine as it is for ``float``).  A
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
        #: what was adjusted in this declaration (a converted default); channel validation
        #: repeats these as warnings of every channel using the module
        self.notes: list[str] = []
        has_value = default is not NO_DEFAULT and default is not None
        if type is None:
            self.type = builtin_type(default) if has_value else None
        else:
            self.type = type
            if has_value and not matches_type(default, type):
                self.default = self._converted_default(default)

    def _converted_default(self, default: Any) -> Any:
        """``default`` converted to the declared type, as the reference does (``type(default)``).

        The reference converts silently, so ``Parameter("n", type=int, default=2.5)`` is
        ``2`` there; modules rely on it, so we convert too, but say so (a Python warning now,
        and a channel warning wherever the module is used), because a lossy conversion is
        usually a slip.  A default that cannot be converted (``int("two")``), or a declared
        type we cannot call (``list[str]``, a union), is an error naming the parameter.
        """
        declared = self.type
        problem = (
            f"An error occurred while processing the parameter {self.name!r}: "
            f"The specified type {type_name(declared)!r} conflicts with the type of the default value "
            f"{default!r} ({builtin_type(default).__name__})"
        )
        if not isinstance(declared, type) or isinstance(declared, types.GenericAlias):
            raise RuntimeError(problem)
        try:
            converted = declared(default)
        except Exception as exc:
            raise RuntimeError(f"{problem}: {type(exc).__name__}: {exc}") from exc
        note = (
            f"parameter {self.name!r}: default {default!r} ({builtin_type(default).__name__}) "
            f"converted to the declared type {type_name(declared)}: {converted!r}"
        )
        self.notes.append(note)
        warnings.warn(ParameterDefaultWarning(note), stacklevel=3)  # the Parameter(...) call
        return converted

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
