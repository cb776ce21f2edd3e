"""Facts: named boolean expressions over data products.

A fact is evaluated once per generation against the products it names.  A fact that fails
raises the *original* exception, as the reference does (``NameError`` for a product
missing from the data block, ``IndexError``, ``ValueError`` for an ambiguous truth value...),
so callers that catch those keep working; the explanation an operator needs (the fact, its
expression, the types of the product values it saw) is attached as a note
(``exc.add_note``), which tracebacks print and :func:`explain` returns.  A fact written
``fail_on_error(expr)`` is False on error instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.logicengine.expressions import Expression, ExpressionError, compile_fact

#: attribute set on an exception raised by a fact: the fact's name
FACT_ATTRIBUTE = "de_fact"


def explanation(fact: str, expression: str, product_types: Mapping[str, str], missing: Iterable[str] = ()) -> str:
    """The note attached to an exception a fact raised."""
    types_text = ", ".join(f"{name}: {kind}" for name, kind in sorted(product_types.items())) or "none"
    missing_text = "".join(f"product {name!r} is not in the data block; " for name in sorted(missing))
    return f"{missing_text}fact {fact!r} ({expression}) failed; product values: {types_text}"


def explain(error: BaseException) -> str:
    """``Type: message`` of an exception, followed by its notes (a failed fact's explanation)."""
    notes = [str(note) for note in getattr(error, "__notes__", ()) or ()]
    return "; ".join([f"{type(error).__name__}: {error}", *notes])


def describe_types(names: frozenset[str], namespace: Mapping[str, Any]) -> dict[str, str]:
    """``{product: type name}`` for the products a fact reads (``<missing>`` when absent)."""
    return {name: type(namespace[name]).__name__ if name in namespace else "<missing>" for name in names}


@dataclass(frozen=True)
class Fact:
    """One named fact: its checked expression and whether errors make it False."""

    name: str
    expression: Expression
    fail_on_error: bool

    @classmethod
    def parse(cls, name: str, source: str) -> Fact:
        """Check and compile ``source``; ``ExpressionError`` names the fact."""
        try:
            expression, fail_on_error = compile_fact(source, f"fact {name}")
        except ExpressionError as exc:
            raise type(exc)(f"fact {name!r} ({source!r}): {exc}") from None
        return cls(name, expression, fail_on_error)

    @property
    def products(self) -> frozenset[str]:
        """The product names the expression reads."""
        return self.expression.names

    def evaluate(self, namespace: dict[str, Any]) -> tuple[bool, BaseException | None]:
        """The fact's truth in ``namespace`` (products, functions, empty builtins).

        Returns (value, swallowed error): the error is not None only for a
        ``fail_on_error`` fact that raised, whose value is then False.
        """
        try:
            return bool(eval(self.expression.code, namespace)), None  # a checked, compiled AST (see expressions.py)
        except Exception as exc:
            missing = [exc.name] if isinstance(exc, NameError) and getattr(exc, "name", None) in self.products else []
            if getattr(exc, FACT_ATTRIBUTE, None) is None:  # an exception object is raised once per fact
                exc.add_note(
                    explanation(self.name, self.expression.source, describe_types(self.products, namespace), missing)
                )
                with contextlib.suppress(AttributeError):  # a few exception types take no attributes
                    setattr(exc, FACT_ATTRIBUTE, self.name)
            if self.fail_on_error:
                return False, exc
            raise
