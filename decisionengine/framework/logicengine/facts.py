"""Facts: named boolean expressions over data products.

A fact is evaluated once per generation against the products it names.  An error while
evaluating is a :class:`FactEvaluationError` naming the fact, its expression and the types
of the product values it saw, so an operator can tell a bad expression from bad data;
a fact written ``fail_on_error(expr)`` is False on error instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.logicengine.expressions import Expression, ExpressionError, compile_fact


class FactEvaluationError(RuntimeError):
    """A fact raised while being evaluated (the generation fails)."""

    def __init__(self, fact: str, expression: str, product_types: Mapping[str, str], cause: BaseException) -> None:
        self.fact = fact
        self.expression = expression
        self.product_types = dict(product_types)
        self.cause = cause
        types_text = ", ".join(f"{name}: {kind}" for name, kind in sorted(self.product_types.items())) or "none"
        super().__init__(
            f"fact {fact!r} ({expression}) failed: {type(cause).__name__}: {cause}; product values: {types_text}"
        )


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
            raise ExpressionError(f"fact {name!r} ({source!r}): {exc}") from None
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
            if isinstance(exc, NameError) and getattr(exc, "name", None) in self.products:
                exc = KeyError(f"product {exc.name!r} is not in the data block")
            if self.fail_on_error:
                return False, exc
            raise FactEvaluationError(
                self.name, self.expression.source, describe_types(self.products, namespace), exc
            ) from exc
