"""Client queries: an allow-list of what a row filter may say, checked and compiled.

A client query (``de-client --print-product P --query EXPR``, XML-RPC ``print_product``)
is untrusted text.  It is parsed with Python's parser and every node is checked against
the *allow-list* below; anything not on it is refused with a message naming the construct
and saying what is allowed.  The facts' checker (a deny-list over methods, for trusted
operators) is not used: a deny-list cannot keep up with pandas, whose methods import
modules by name (``engine=``, ``backend=``, plotting, ``to_*`` writers), run callables
(``pipe``, ``apply``) or evaluate strings (``eval``, ``query``).

A query may contain:

* **columns**: a bare name (``cores``) or ``df['job id']`` for any column label (``df``
  stands for the product; an integer label is ``df[0]``);
* **literals**: numbers, strings, ``True``, ``False``, ``None``; lists, tuples and sets of
  those;
* **operators**: ``and``, ``or``, ``not`` (row by row, as in pandas' ``query``), ``&``,
  ``|``, ``~``, comparisons ``== != < <= > >=`` (chains such as ``1 < x <= 4``), ``in`` and
  ``not in`` a literal list/tuple/set, ``+ - * / // % **`` and unary ``-``/``+``;
* **methods** on columns and expressions over them, with keyword arguments only from each
  method's own list, and the fields of ``.dt`` (the tables of :mod:`.query_allowlist`).
  ``.str.contains`` always matches plain text (``regex`` is forced to False), so no
  regular expression ever runs.

Resource limits (:mod:`decisionengine.framework.logicengine.limits`, shared with facts):
the exponent of ``**`` is a literal within +-64, literal strings and lists are repeated at
most 1000 times, a column of strings likewise (checked on the values), ``%`` never formats
strings; a query is at most :data:`MAX_QUERY_LENGTH` characters and :data:`MAX_QUERY_NODES`
nodes, nested at most :data:`MAX_QUERY_DEPTH` deep.  Even so a query may be slow on a big
product, which is why the server evaluates it in a worker process it can stop
(:mod:`.query_runner`).

The result must be a boolean column: one true/false value per row.

Compilation rewrites the checked tree: columns become names bound to the column values,
``and``/``or``/``not``/``in`` become row-wise helpers, ``*`` and ``%`` become the guards.
The code is evaluated with empty builtins in a namespace holding only those.
"""

from __future__ import annotations

import ast
import operator
import types
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd

from decisionengine.framework.logicengine import limits
from decisionengine.framework.logicengine.errors import ExpressionError
from decisionengine.framework.logicengine.expressions import parse
from decisionengine.framework.web.query_allowlist import (
    ALLOWED_SUMMARY,
    BIN_OPS,
    COLUMN_METHODS,
    COMPARE_OPS,
    DT_FIELDS,
    STR_METHODS,
    UNARY_OPS,
    Kind,
    Method,
    is_constant,
    is_literal_collection,
)

MAX_QUERY_LENGTH = 2000
MAX_QUERY_NODES = 300
MAX_QUERY_DEPTH = 64
#: the name standing for the product in ``df['column']``
FRAME = "df"


class QueryError(ExpressionError):
    """A client query is refused (not on the allow-list, over a limit) or failed."""


EXAMPLE = "a query is an expression such as: cores > 4 and site == 'A'"
ONE_BY_ONE = "pass the arguments one by one, e.g. x.between(1, 5)"
NUMBERS_ONLY = "% may only take the remainder of numbers"


def _show(node: ast.AST) -> str:
    text = ast.unparse(node)
    return repr(text if len(text) <= 60 else text[:57] + "...")


_NODE_NAMES: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda",
    ast.NamedExpr: "assignment expression ':='",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield from",
    ast.Starred: "'*' unpacking",
    ast.IfExp: "conditional expression (a if c else b)",
    ast.Dict: "dict",
    ast.Slice: "slice",
}


# -- columns ----------------------------------------------------------------------------------


class _Columns:
    """Resolves column references to positions in the product's columns."""

    def __init__(self, labels: Sequence[Hashable]) -> None:
        self.labels = list(labels)
        self.used: dict[int, str] = {}  # position -> name in the compiled code

    def position(self, label: Hashable, node: ast.AST) -> int:
        found = [i for i, candidate in enumerate(self.labels) if _same_label(candidate, label)]
        if not found:
            shown = [str(c) for c in self.labels]
            raise QueryError(f"query names unknown columns {[label]!r} (in {_show(node)}); columns are {shown}")
        if len(found) > 1:
            raise QueryError(f"column {label!r} appears {len(found)} times in the product; it cannot be queried")
        return found[0]

    def slot(self, position: int) -> str:
        return self.used.setdefault(position, f"_c{len(self.used)}")


def _same_label(candidate: Hashable, label: Hashable) -> bool:
    """A string matches a string label; an integer an integer label (numpy's included)."""
    if isinstance(label, str):
        return isinstance(candidate, str) and candidate == label
    return isinstance(candidate, int | np.integer) and not isinstance(candidate, bool) and candidate == label


def _column_label(node: ast.expr) -> Hashable | None:
    """The label a node names as a column (``name`` or ``df[label]``), None if it names none."""
    if isinstance(node, ast.Name) and node.id != FRAME:
        return node.id
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == FRAME:
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str | int) and not isinstance(key.value, bool):
            return key.value
    return None


# -- the checker ------------------------------------------------------------------------------


class _Checker(ast.NodeVisitor):
    """Walks a query; raises :class:`QueryError` at the first node not on the allow-list."""

    def __init__(self, columns: _Columns) -> None:
        self.columns = columns

    def generic_visit(self, node: ast.AST) -> None:
        name = _NODE_NAMES.get(type(node), type(node).__name__)
        raise QueryError(f"{name} is not allowed in a query ({_show(node)}); {ALLOWED_SUMMARY}")

    # -- leaves ----------------------------------------------------------------------------------

    def visit_Constant(self, node: ast.Constant) -> None:
        if node.value is not None and not isinstance(node.value, bool | int | float | str):
            raise QueryError(
                f"the literal {_show(node)} is not allowed; literals are numbers, strings, True, False and None"
            )

    def visit_Name(self, node: ast.Name) -> None:
        if node.id.startswith("_"):
            raise QueryError(
                f"name {node.id!r} is not allowed (names starting with '_' are refused); "
                f"use df[{node.id!r}] for a column named so"
            )
        if node.id == FRAME:
            raise QueryError(f"{FRAME!r} stands for the product and may only be used as {FRAME}['column']")
        self.columns.position(node.id, node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        label = _column_label(node)
        if label is None:
            raise QueryError(
                f"the subscript {_show(node)} is not allowed; the only subscript is {FRAME}['column'] "
                f"(or {FRAME}[0] for an integer label)"
            )
        self.columns.position(label, node)

    def _visit_collection(self, node: ast.List | ast.Tuple | ast.Set) -> None:
        if not is_literal_collection(node):
            raise QueryError(f"{_show(node)}: lists, tuples and sets may only hold literals")

    visit_List = visit_Tuple = visit_Set = _visit_collection

    # -- operators ---------------------------------------------------------------------------------

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for value in node.values:
            self.visit(value)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if not isinstance(node.op, UNARY_OPS):
            raise QueryError(f"operator {type(node.op).__name__} is not allowed; {ALLOWED_SUMMARY}")
        self.visit(node.operand)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) not in BIN_OPS:
            raise QueryError(
                f"operator {type(node.op).__name__} is not allowed in {_show(node)}; "
                f"operators are {' '.join(BIN_OPS.values())}"
            )
        if isinstance(node.op, ast.Mod) and is_constant(node.left, str):
            raise QueryError(f"string formatting with % is not allowed ({_show(node)}); {NUMBERS_ONLY}")
        try:
            limits.check_operation(node)
        except ExpressionError as exc:
            raise QueryError(str(exc)) from None
        self.visit(node.left)
        self.visit(node.right)

    def visit_Compare(self, node: ast.Compare) -> None:
        operands = [node.left, *node.comparators]
        for op, right in zip(node.ops, node.comparators, strict=True):
            if not isinstance(op, COMPARE_OPS):
                raise QueryError(
                    f"comparison {type(op).__name__} is not allowed in {_show(node)}; "
                    "use == != < <= > >= in, not in (and .isna() / .notna() for missing values)"
                )
            if isinstance(op, ast.In | ast.NotIn) and not is_literal_collection(right):
                raise QueryError(
                    f"the right side of 'in' must be a list, tuple or set of literals, not {_show(right)} "
                    "(for text inside a string column use col.str.contains('...'))"
                )
        for operand in operands:
            self.visit(operand)

    # -- methods -----------------------------------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Attribute) and node.value.attr == "dt":
            if node.attr not in DT_FIELDS:
                raise QueryError(f".dt.{node.attr} is not allowed; .dt fields are {', '.join(sorted(DT_FIELDS))}")
            self._visit_receiver(node.value.value)
            return
        if node.attr in COLUMN_METHODS:
            raise QueryError(f"method {node.attr!r} must be called: {_show(node)}()")
        if node.attr in ("str", "dt"):
            raise QueryError(f"'.{node.attr}' must be followed by one of its allowed members ({_show(node)})")
        raise QueryError(f"attribute {node.attr!r} is not allowed ({_show(node)}); {ALLOWED_SUMMARY}")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if not isinstance(func, ast.Attribute):
            raise QueryError(
                f"calling {_show(func)} is not allowed: a query calls no functions, only the allowed methods of "
                f"columns; {ALLOWED_SUMMARY}"
            )
        table, receiver, label = self._method_table(func)
        method = table.get(func.attr)
        if method is None:
            allowed = ", ".join(sorted(table))
            raise QueryError(f"method {label}{func.attr}() is not allowed in a query; allowed: {allowed}")
        self._visit_receiver(receiver)
        self._check_arguments(node, f"{label}{func.attr}()", method)

    def _method_table(self, func: ast.Attribute) -> tuple[Mapping[str, Method], ast.expr, str]:
        owner = func.value
        if isinstance(owner, ast.Attribute) and owner.attr == "str":
            return STR_METHODS, owner.value, ".str."
        if isinstance(owner, ast.Attribute) and owner.attr == "dt":
            fields = ", ".join(sorted(DT_FIELDS))
            raise QueryError(f".dt.{func.attr}() is not allowed; .dt offers fields only: {fields}")
        return COLUMN_METHODS, owner, ""

    def _visit_receiver(self, node: ast.expr) -> None:
        if isinstance(node, ast.Constant | ast.List | ast.Tuple | ast.Set):
            raise QueryError(f"methods apply to columns and expressions over them, not to the literal {_show(node)}")
        self.visit(node)

    def _check_arguments(self, node: ast.Call, name: str, method: Method) -> None:
        if any(isinstance(argument, ast.Starred) for argument in node.args):
            raise QueryError(f"'*' unpacking is not allowed in {name}; {ONE_BY_ONE}")
        if len(node.args) > len(method.positional):
            raise QueryError(f"{name} takes at most {len(method.positional)} positional argument(s)")
        if len(node.args) < method.required and not node.keywords:
            raise QueryError(f"{name} needs {method.required} argument(s)")
        for index, (argument, kind) in enumerate(zip(node.args, method.positional, strict=False)):
            self._check_kind(argument, kind, f"argument {index + 1} of {name}")
        for keyword in node.keywords:
            if keyword.arg is None:
                raise QueryError(f"'**' unpacking is not allowed in {name}; {ONE_BY_ONE}")
            kind = method.keywords.get(keyword.arg)
            if kind is None:
                accepted = ", ".join(sorted(method.keywords)) or "no keyword arguments"
                raise QueryError(f"keyword {keyword.arg!r} is not allowed in {name}; it accepts {accepted}")
            self._check_kind(keyword.value, kind, f"keyword {keyword.arg!r} of {name}")

    def _check_kind(self, node: ast.expr, kind: Kind, where: str) -> None:
        if kind.test is None:
            self.visit(node)
        elif not kind.test(node):
            raise QueryError(f"{where} must be {kind.description}, not {_show(node)}")


def _check_size(tree: ast.AST) -> None:
    """Bound the tree before walking it recursively (no RecursionError from a deep query)."""
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_QUERY_NODES:
            raise QueryError(f"the query is too complex: at most {MAX_QUERY_NODES} parts are allowed")
        if depth > MAX_QUERY_DEPTH:
            raise QueryError(f"the query is nested too deeply: at most {MAX_QUERY_DEPTH} levels are allowed")
        stack.extend(
            (child, depth + 1) for child in ast.iter_child_nodes(node) if not isinstance(child, ast.expr_context)
        )


# -- compilation ------------------------------------------------------------------------------

_HELPER_AND = "_q_and"
_HELPER_OR = "_q_or"
_HELPER_NOT = "_q_not"
_HELPER_IN = "_q_in"
_HELPER_NOT_IN = "_q_not_in"
_HELPER_MUL = "_q_multiply"
_HELPER_MOD = "_q_modulo"


def _call(name: str, args: list[ast.expr], like: ast.AST) -> ast.Call:
    return ast.copy_location(ast.Call(ast.Name(name, ast.Load()), args, []), like)


class _Rewriter(ast.NodeTransformer):
    """Turns a checked query into code over column slots and row-wise helpers."""

    def __init__(self, columns: _Columns) -> None:
        self.columns = columns

    def _column(self, node: ast.expr) -> ast.expr:
        label = _column_label(node)
        assert label is not None  # checked
        slot = self.columns.slot(self.columns.position(label, node))
        return ast.copy_location(ast.Name(slot, ast.Load()), node)

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return self._column(node)

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        return self._column(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.expr:
        values = [self.visit(v) for v in node.values]
        return _call(_HELPER_AND if isinstance(node.op, ast.And) else _HELPER_OR, values, node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        self.generic_visit(node)
        return _call(_HELPER_NOT, [node.operand], node) if isinstance(node.op, ast.Not) else node

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        if isinstance(node.op, ast.Mult):
            return _call(_HELPER_MUL, [node.left, node.right], node)
        if isinstance(node.op, ast.Mod):
            return _call(_HELPER_MOD, [node.left, node.right], node)
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        operands = [self.visit(o) for o in (node.left, *node.comparators)]
        parts: list[ast.expr] = []
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            if isinstance(op, ast.In | ast.NotIn):
                parts.append(_call(_HELPER_IN if isinstance(op, ast.In) else _HELPER_NOT_IN, [left, right], node))
            else:
                parts.append(ast.copy_location(ast.Compare(left, [op], [right]), node))
        return parts[0] if len(parts) == 1 else _call(_HELPER_AND, parts, node)

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute) and func.value.attr == "str":
            forced = STR_METHODS[func.attr].forced
            node.keywords = [k for k in node.keywords if k.arg not in forced]
            node.keywords += [ast.keyword(name, ast.Constant(value)) for name, value in forced.items()]
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        # only the receiver can hold columns; the accessor names (str, dt) stay as they are
        if isinstance(node.value, ast.Attribute) and node.value.attr in ("str", "dt"):
            node.value.value = self.visit(node.value.value)
        else:
            node.value = self.visit(node.value)
        return node


@dataclass(frozen=True)
class CompiledQuery:
    """A checked query: its code and the columns it reads (positions in the product's columns)."""

    source: str
    code: types.CodeType
    slots: Mapping[int, str]

    @property
    def positions(self) -> list[int]:
        """Positions of the columns the query reads, in the product's column order."""
        return sorted(self.slots)


def compile_query(source: Any, labels: Sequence[Hashable]) -> CompiledQuery:
    """Check ``source`` against the allow-list and the limits, for a product whose column
    labels are ``labels``; :class:`QueryError` says what is refused and what is allowed."""
    if not isinstance(source, str) or not source.strip():
        raise QueryError("a query must be a non-empty string")
    if len(source) > MAX_QUERY_LENGTH:
        raise QueryError(f"the query is {len(source)} characters long; at most {MAX_QUERY_LENGTH} are allowed")
    try:
        tree = parse(source)
    except ExpressionError as exc:
        raise QueryError(f"query {source.strip()!r}: {exc}; {EXAMPLE}") from None
    except (RecursionError, MemoryError):
        raise QueryError(f"the query is nested too deeply; at most {MAX_QUERY_DEPTH} levels are allowed") from None
    _check_size(tree)
    columns = _Columns(labels)
    _Checker(columns).visit(tree)
    rewritten = _Rewriter(columns).visit(tree)
    expression = ast.fix_missing_locations(ast.Expression(body=rewritten))
    return CompiledQuery(source.strip(), compile(expression, "<query>", "eval"), dict(columns.used))


# -- evaluation --------------------------------------------------------------------------------

_ARRAYS = (pd.Series, pd.Index, np.ndarray)


def _truth(value: Any) -> Any:
    """Row-wise truth of a column (missing values of a boolean column are false)."""
    if not isinstance(value, _ARRAYS):
        return bool(value)
    if isinstance(value, pd.Series | pd.Index) and isinstance(value.dtype, pd.BooleanDtype):
        return value.fillna(False).astype(bool)
    return value if value.dtype == bool else value.astype(bool)


def _row_and(*values: Any) -> Any:
    if not any(isinstance(v, _ARRAYS) for v in values):
        return all(values)
    return reduce(operator.and_, (_truth(v) for v in values))


def _row_or(*values: Any) -> Any:
    if not any(isinstance(v, _ARRAYS) for v in values):
        return any(values)
    return reduce(operator.or_, (_truth(v) for v in values))


def _row_not(value: Any) -> Any:
    return ~_truth(value) if isinstance(value, _ARRAYS) else not value


def _row_in(value: Any, collection: Any) -> Any:
    if isinstance(value, pd.Series | pd.Index):
        return value.isin(list(collection))
    return value in collection


def _row_not_in(value: Any, collection: Any) -> Any:
    return _row_not(_row_in(value, collection))


HELPERS: dict[str, Any] = {
    _HELPER_AND: _row_and,
    _HELPER_OR: _row_or,
    _HELPER_NOT: _row_not,
    _HELPER_IN: _row_in,
    _HELPER_NOT_IN: _row_not_in,
    _HELPER_MUL: limits.checked_multiply,
    _HELPER_MOD: limits.refused_string_formatting,
}


def _describe(value: Any) -> str:
    if isinstance(value, pd.Series):
        return f"a column of {value.dtype}"
    return f"a single {type(value).__name__} ({str(value)[:40]})"


def row_mask(query: CompiledQuery, frame: pd.DataFrame) -> np.ndarray:
    """Evaluate ``query`` over ``frame``: one bool per row, or :class:`QueryError` saying why not."""
    namespace: dict[str, Any] = {"__builtins__": {}, **HELPERS}
    for position, slot in query.slots.items():
        namespace[slot] = frame.iloc[:, position]
    try:
        result = eval(query.code, namespace)  # a checked, rewritten tree (see the module docstring)
    except MemoryError:
        raise  # the worker reports it as such
    except limits.ResourceLimitError as exc:
        raise QueryError(f"query {query.source!r} was refused: {exc}") from None
    except Exception as exc:
        raise QueryError(f"query {query.source!r} failed: {type(exc).__name__}: {str(exc)[:300]}") from None
    if isinstance(result, pd.Series) and isinstance(result.dtype, pd.BooleanDtype):
        result = result.fillna(False).astype(bool)
    if not (isinstance(result, pd.Series) and result.dtype == bool and result.index.equals(frame.index)):
        raise QueryError(
            f"query {query.source!r} must give one true/false value per row, not {_describe(result)} "
            "(compare a column: x > 3, name.str.contains('a'), x.isin([1, 2]))"
        )
    return result.to_numpy(dtype=bool)
