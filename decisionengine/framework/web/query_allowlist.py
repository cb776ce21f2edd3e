"""What a client query may say: the allow-list, as data.

:mod:`.query_language` walks a query and accepts a node only if it is described here:
the operators, and for every method the kinds of its positional arguments, its keywords
(nothing else: never ``engine``, ``backend``, ``inplace``, a callable or a regular
expression) and the keywords we always set ourselves.  Adding a method means adding a line
here, after checking that it is pure (returns a new value, changes nothing), takes no
callable, imports nothing by name, and costs at most a pass over the data.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from decisionengine.framework.logicengine import limits

# -- argument kinds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What one argument may be: ``test`` on the node, or any allowed expression (``test`` None)."""

    description: str
    test: Callable[[ast.expr], bool] | None = None


def is_constant(node: ast.expr, *types_: type) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, types_)


def is_scalar(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return is_constant(node.operand, int, float) and not is_constant(node.operand, bool)
    return isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, int | float | str))


def _small_int(node: ast.expr) -> bool:
    value = limits.literal_count(node)
    return value is not None and not is_constant(node, bool) and abs(value) <= limits.MAX_EXPONENT


def _fraction(node: ast.expr) -> bool:
    value = limits.literal_number(node)
    return value is not None and 0 <= value <= 1


def _texts(node: ast.expr) -> bool:
    if isinstance(node, ast.Tuple):
        return bool(node.elts) and all(is_constant(e, str) for e in node.elts)
    return is_constant(node, str)


def is_literal_collection(node: ast.expr) -> bool:
    return isinstance(node, ast.List | ast.Tuple | ast.Set) and all(is_scalar(e) for e in node.elts)


def _choice(*values: str) -> Kind:
    return Kind(f"one of {', '.join(map(repr, values))}", lambda n: is_constant(n, str) and n.value in values)


BOOL = Kind("True or False", lambda n: is_constant(n, bool))
FALSE = Kind("False (regular expressions are not allowed)", lambda n: is_constant(n, bool) and n.value is False)
SMALL_INT = Kind(f"a literal integer between -{limits.MAX_EXPONENT} and {limits.MAX_EXPONENT}", _small_int)
FRACTION = Kind("a literal number between 0 and 1", _fraction)
TEXT = Kind("a literal string", lambda n: is_constant(n, str))
TEXT_OR_NONE = Kind("a literal string or None", lambda n: is_constant(n, str) or is_constant(n, type(None)))
TEXTS = Kind("a literal string or a tuple of literal strings", _texts)
SCALAR = Kind("a literal number, string, True, False or None", is_scalar)
LITERALS = Kind("a list, tuple or set of literals", is_literal_collection)
VALUE = Kind("a column, a literal or an expression over them")


@dataclass(frozen=True)
class Method:
    """An allowed method: its positional arguments, keywords, and keywords we always set."""

    positional: tuple[Kind, ...] = ()
    required: int = 0
    keywords: Mapping[str, Kind] = field(default_factory=dict)
    forced: Mapping[str, Any] = field(default_factory=dict)


_SKIPNA = {"skipna": BOOL}

#: methods of a column (or of an expression over columns): pure, none takes a callable, a
#: module name or ``inplace``.  Reductions give one value; the others one value per row.
COLUMN_METHODS: dict[str, Method] = {
    # reductions
    "all": Method(keywords=_SKIPNA),
    "any": Method(keywords=_SKIPNA),
    "count": Method(),
    "max": Method(keywords=_SKIPNA),
    "mean": Method(keywords=_SKIPNA),
    "median": Method(keywords=_SKIPNA),
    "min": Method(keywords=_SKIPNA),
    "nunique": Method(keywords={"dropna": BOOL}),
    "quantile": Method(positional=(FRACTION,), keywords={"q": FRACTION}),
    "std": Method(keywords={**_SKIPNA, "ddof": SMALL_INT}),
    "sum": Method(keywords={**_SKIPNA, "min_count": SMALL_INT}),
    "var": Method(keywords={**_SKIPNA, "ddof": SMALL_INT}),
    # one value per row
    "abs": Method(),
    "between": Method(
        positional=(VALUE, VALUE), required=2, keywords={"inclusive": _choice("both", "neither", "left", "right")}
    ),
    "clip": Method(positional=(VALUE, VALUE), keywords={"lower": VALUE, "upper": VALUE}),
    "fillna": Method(positional=(SCALAR,), keywords={"value": SCALAR}),
    "isin": Method(positional=(LITERALS,), required=1),
    "isna": Method(),
    "isnull": Method(),
    "notna": Method(),
    "notnull": Method(),
    "round": Method(positional=(SMALL_INT,), keywords={"decimals": SMALL_INT}),
}

#: methods of ``column.str``: plain-text tests and transformations (no regular expressions)
STR_METHODS: dict[str, Method] = {
    "contains": Method(
        positional=(TEXT,),
        required=1,
        keywords={"case": BOOL, "na": SCALAR, "regex": FALSE},
        forced={"regex": False},
    ),
    "startswith": Method(positional=(TEXTS,), required=1, keywords={"na": SCALAR}),
    "endswith": Method(positional=(TEXTS,), required=1, keywords={"na": SCALAR}),
    "len": Method(),
    "lower": Method(),
    "upper": Method(),
    "casefold": Method(),
    "strip": Method(positional=(TEXT_OR_NONE,), keywords={"to_strip": TEXT_OR_NONE}),
    "lstrip": Method(positional=(TEXT_OR_NONE,), keywords={"to_strip": TEXT_OR_NONE}),
    "rstrip": Method(positional=(TEXT_OR_NONE,), keywords={"to_strip": TEXT_OR_NONE}),
    **{
        name: Method()
        for name in (
            "isalnum",
            "isalpha",
            "isdecimal",
            "isdigit",
            "islower",
            "isnumeric",
            "isspace",
            "istitle",
            "isupper",
        )
    },
}

#: fields of ``column.dt`` (attributes, not calls)
DT_FIELDS: frozenset[str] = frozenset(
    [
        "year",
        "month",
        "day",
        "hour",
        "minute",
        "second",
        "microsecond",
        "nanosecond",
        "dayofweek",
        "day_of_week",
        "weekday",
        "dayofyear",
        "day_of_year",
        "quarter",
        "days_in_month",
        "is_month_start",
        "is_month_end",
        "is_quarter_start",
        "is_quarter_end",
        "is_year_start",
        "is_year_end",
        "is_leap_year",
    ]
)

BIN_OPS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.BitAnd: "&",
    ast.BitOr: "|",
}
UNARY_OPS = (ast.Not, ast.USub, ast.UAdd, ast.Invert)
COMPARE_OPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)

ALLOWED_SUMMARY = (
    "a query may use columns (name, or df['name']), literals, and/or/not, & | ~, comparisons, "
    "in/not in a literal list, + - * / // % **, and the methods "
    f"{', '.join(sorted(COLUMN_METHODS))}; "
    f".str.{', .str.'.join(sorted(STR_METHODS))}; "
    f".dt.{', .dt.'.join(sorted(DT_FIELDS))}"
)
