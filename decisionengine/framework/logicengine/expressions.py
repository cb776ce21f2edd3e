"""Fact and rule expressions: parsed once, checked against an allow-list, then compiled.

Why an allow-list instead of ``eval`` on the raw text: an expression from a channel file
must not be able to reach the interpreter (``__import__('os').system(...)``, dunder
attributes, lambdas, code-evaluating pandas methods such as ``df.eval``/``df.query``).
Every node of the parsed tree is checked when the channel loads; only an expression made
of allowed pieces is compiled, and it is evaluated with *empty* builtins in a namespace
holding just the products (or facts) it names and the allowed functions.  Evaluation is
therefore as fast as compiled Python, with no interpretation layer of our own.

Fact expressions may use:

* boolean operators, comparisons (including ``in``/``is``), arithmetic, bitwise and unary
  operators (pandas masks use ``&``, ``|``, ``~``), conditional expressions ``a if c else b``;
* constants and literal lists, tuples, sets and dicts, subscripts and slices;
* product names (any name not starting with ``_`` that is not an allowed function);
* attribute access on products (not to names starting with ``_``, nor to a name in
  :data:`DENIED_ATTRIBUTES` / with a prefix in :data:`DENIED_ATTRIBUTE_PREFIXES`);
* calls of the functions in :data:`FUNCTIONS`, of the ``np``/``numpy`` functions in
  :data:`NUMPY_FUNCTIONS`, and method calls on product values (same attribute rules);
  keyword arguments are allowed except ``inplace``; ``*args``/``**kwargs`` are not.

Facts are trusted (the operator writes them), so beyond the deny-list above they get the
*resource* limits of :mod:`.limits`, the same as client queries: exponents of ``**`` and
shifts of ``<<`` are small literals, literal strings and lists are repeated a bounded
number of times, methods that allocate by a count (``repeat``, ``center``...) take a small
literal count; all checked when the channel loads.  What only the values tell (a string
column times a big number) is refused while evaluating: ``*`` and ``%`` compile to calls of
guards (:func:`.limits.checked_multiply`, :func:`.limits.checked_modulo`).

Rule expressions are plain logic over fact names: ``and``, ``or``, ``not``, ``==``/``!=``,
``True``/``False`` and parentheses.
"""

from __future__ import annotations

import ast
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

from decisionengine.framework.logicengine import limits
from decisionengine.framework.logicengine.errors import ExpressionError, ExpressionSyntaxError

FAIL_ON_ERROR = "fail_on_error"

#: plain functions an expression may call
FUNCTIONS: dict[str, Any] = {
    "abs": abs,
    "all": all,
    "any": any,
    "bool": bool,
    "float": float,
    "int": int,
    "len": len,
    "list": list,
    "max": max,
    "min": min,
    "round": round,
    "set": set,
    "sorted": sorted,
    "str": str,
    "sum": sum,
    "tuple": tuple,
}

#: numpy functions and constants reachable as ``np.<name>`` / ``numpy.<name>``
NUMPY_FUNCTIONS: frozenset[str] = frozenset(
    [
        "abs",
        "absolute",
        "all",
        "allclose",
        "any",
        "array",
        "ceil",
        "clip",
        "count_nonzero",
        "cumsum",
        "diff",
        "exp",
        "floor",
        "inf",
        "isclose",
        "isfinite",
        "isin",
        "isinf",
        "isnan",
        "log",
        "log10",
        "log2",
        "logical_and",
        "logical_not",
        "logical_or",
        "logical_xor",
        "max",
        "maximum",
        "mean",
        "median",
        "min",
        "minimum",
        "nan",
        "nanmax",
        "nanmean",
        "nanmedian",
        "nanmin",
        "nanpercentile",
        "nanstd",
        "nansum",
        "nanvar",
        "percentile",
        "pi",
        "prod",
        "quantile",
        "round",
        "sign",
        "sqrt",
        "square",
        "std",
        "sum",
        "unique",
        "var",
        "where",
    ]
)

#: attribute names refused anywhere: code evaluation, callables-as-arguments, I/O, mutation
DENIED_ATTRIBUTES: frozenset[str] = frozenset(
    [
        "eval",
        "query",
        "pipe",
        "map",
        "transform",
        "tofile",
        "style",
        "format",
        "format_map",
        "ctypes",
        "update",
        "insert",
        "pop",
        "popitem",
        "clear",
        "append",
        "extend",
        "remove",
        "setdefault",
        "sort",
        "reverse",
        "fill",
        "resize",
        "put",
        "itemset",
        "setflags",
        "write",
        "read",
        "load",
        "loads",
        "open",
        "close",
        "exec",
        "system",
        "compile",
        "vectorize",
        "frompyfunc",
        "fromfile",
        "memmap",
    ]
)
DENIED_ATTRIBUTE_PREFIXES: tuple[str, ...] = ("_", "apply", "agg", "to_", "dump", "save", "read_", "plot")

NUMPY_NAMES = ("np", "numpy")

_BIN_OPS = (
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.BitAnd,
    ast.BitOr,
    ast.BitXor,
    ast.LShift,
    ast.RShift,
    ast.MatMult,
)
_UNARY_OPS = (ast.Not, ast.USub, ast.UAdd, ast.Invert)
_RULE_COMPARE_OPS = (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)


#: what ``*`` and ``%`` compile to in facts (names a fact cannot write: they start with '_')
GUARDS: dict[str, Any] = {
    "_de_multiply": limits.checked_multiply,
    "_de_modulo": limits.checked_modulo,
}
_GUARDED_OPS: dict[type[ast.operator], str] = {ast.Mult: "_de_multiply", ast.Mod: "_de_modulo"}


def numpy_namespace() -> types.SimpleNamespace:
    """The restricted ``np`` object expressions see: only :data:`NUMPY_FUNCTIONS`."""
    return types.SimpleNamespace(**{name: getattr(np, name) for name in sorted(NUMPY_FUNCTIONS)})


def evaluation_functions() -> dict[str, Any]:
    """Names every fact namespace holds besides products: functions, ``np``, guards, empty builtins."""
    numpy_ns = numpy_namespace()
    return {**FUNCTIONS, **dict.fromkeys(NUMPY_NAMES, numpy_ns), **GUARDS, "__builtins__": {}}


def attribute_denied(attr: str) -> bool:
    return attr in DENIED_ATTRIBUTES or attr.startswith(DENIED_ATTRIBUTE_PREFIXES)


@dataclass(frozen=True)
class Expression:
    """A checked, compiled expression.

    ``names`` are the free names it reads (products for a fact, facts for a rule); allowed
    functions and ``np`` are not included.
    """

    source: str
    code: types.CodeType
    names: frozenset[str]


def parse(source: str) -> ast.expr:
    """Parse one expression; several lines are allowed (as if inside parentheses)."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("expected a non-empty expression string")
    text = source.strip()
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError:
        pass
    try:
        return ast.parse(f"(\n{text}\n)", mode="eval").body
    except SyntaxError as exc:
        raise ExpressionSyntaxError(f"invalid syntax: {exc.msg}") from None


class _FactChecker(ast.NodeVisitor):
    """Walks a fact expression; raises ExpressionError at the first forbidden node."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def generic_visit(self, node: ast.AST) -> None:
        raise ExpressionError(f"{_describe_node(node)} is not allowed in an expression")

    # -- leaves ----------------------------------------------------------------------------------

    def visit_Constant(self, node: ast.Constant) -> None:
        return

    def visit_Name(self, node: ast.Name) -> None:
        if node.id.startswith("_"):
            raise ExpressionError(f"name {node.id!r} is not allowed (names starting with '_' are refused)")
        if node.id == FAIL_ON_ERROR:
            raise ExpressionError(f"{FAIL_ON_ERROR}(...) may only wrap a whole fact expression")
        if node.id in FUNCTIONS:
            raise ExpressionError(f"function {node.id!r} may only be called, not used as a value")
        if node.id in NUMPY_NAMES:
            raise ExpressionError(f"{node.id!r} may only be used as {node.id}.<function>")
        self.names.add(node.id)

    # -- operators -------------------------------------------------------------------------------

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for value in node.values:
            self.visit(value)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if not isinstance(node.op, _BIN_OPS):
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed")
        limits.check_operation(node)
        self.visit(node.left)
        self.visit(node.right)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if not isinstance(node.op, _UNARY_OPS):
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed")
        self.visit(node.operand)

    def visit_Compare(self, node: ast.Compare) -> None:
        self.visit(node.left)
        for comparator in node.comparators:
            self.visit(comparator)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.visit(node.test)
        self.visit(node.body)
        self.visit(node.orelse)

    # -- containers and access -------------------------------------------------------------------

    def visit_List(self, node: ast.List) -> None:
        self._visit_elements(node.elts)

    def visit_Tuple(self, node: ast.Tuple) -> None:
        self._visit_elements(node.elts)

    def visit_Set(self, node: ast.Set) -> None:
        self._visit_elements(node.elts)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key in node.keys:
            if key is None:
                raise ExpressionError("'**' unpacking is not allowed")
            self.visit(key)
        self._visit_elements(node.values)

    def _visit_elements(self, elements: list[ast.expr]) -> None:
        for element in elements:
            if isinstance(element, ast.Starred):
                raise ExpressionError("'*' unpacking is not allowed")
            self.visit(element)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.visit(node.value)
        self.visit(node.slice)

    def visit_Slice(self, node: ast.Slice) -> None:
        for part in (node.lower, node.upper, node.step):
            if part is not None:
                self.visit(part)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if isinstance(node.value, ast.Name) and node.value.id in NUMPY_NAMES:
            if attr not in NUMPY_FUNCTIONS:
                raise ExpressionError(f"{node.value.id}.{attr} is not an allowed numpy function")
            return
        if isinstance(node.value, ast.Name) and node.value.id in FUNCTIONS:
            raise ExpressionError(f"attribute {attr!r} of function {node.value.id!r} is not allowed")
        self.visit(node.value)
        if attribute_denied(attr):
            raise ExpressionError(f"attribute {attr!r} is not allowed")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id == FAIL_ON_ERROR:
                raise ExpressionError(f"{FAIL_ON_ERROR}(...) may only wrap a whole fact expression")
            if func.id not in FUNCTIONS:
                raise ExpressionError(f"{func.id!r} is not an allowed function ({', '.join(sorted(FUNCTIONS))})")
        elif isinstance(func, ast.Attribute):
            self.visit(func)
            limits.check_counted_call(node, func.attr)
        else:
            raise ExpressionError("only allowed functions and methods of values may be called")
        self._visit_elements(node.args)
        for keyword in node.keywords:
            if keyword.arg is None:
                raise ExpressionError("'**' unpacking is not allowed")
            if keyword.arg == "inplace":
                raise ExpressionError("keyword 'inplace' is not allowed: expressions must not modify products")
            self.visit(keyword.value)


class _RuleChecker(ast.NodeVisitor):
    """Walks a rule expression: logic over fact names only."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def generic_visit(self, node: ast.AST) -> None:
        raise ExpressionError(
            f"{_describe_node(node)} is not allowed in a rule (use and, or, not, ==, != over fact names)"
        )

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, bool):
            raise ExpressionError(f"constant {node.value!r} is not allowed in a rule (only True and False)")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id.startswith("_"):
            raise ExpressionError(f"name {node.id!r} is not allowed (names starting with '_' are refused)")
        self.names.add(node.id)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for value in node.values:
            self.visit(value)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if not isinstance(node.op, ast.Not):
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed in a rule")
        self.visit(node.operand)

    def visit_Compare(self, node: ast.Compare) -> None:
        for op in node.ops:
            if not isinstance(op, _RULE_COMPARE_OPS):
                raise ExpressionError(f"comparison {type(op).__name__} is not allowed in a rule")
        self.visit(node.left)
        for comparator in node.comparators:
            self.visit(comparator)


def _describe_node(node: ast.AST) -> str:
    names = {
        ast.Lambda: "lambda",
        ast.NamedExpr: "assignment expression ':='",
        ast.ListComp: "list comprehension",
        ast.SetComp: "set comprehension",
        ast.DictComp: "dict comprehension",
        ast.GeneratorExp: "generator expression",
        ast.JoinedStr: "f-string",
        ast.Await: "await",
        ast.Yield: "yield",
        ast.YieldFrom: "yield from",
        ast.Starred: "'*' unpacking",
    }
    return names.get(type(node), type(node).__name__)


class _Guard(ast.NodeTransformer):
    """Replaces ``a * b`` and ``a % b`` by calls of the runtime guards (:data:`GUARDS`)."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        guard = _GUARDED_OPS.get(type(node.op))
        if guard is None:
            return node
        return ast.copy_location(ast.Call(ast.Name(guard, ast.Load()), [node.left, node.right], []), node)


def _compile(node: ast.expr, label: str) -> types.CodeType:
    tree = ast.fix_missing_locations(ast.Expression(body=node))
    return compile(tree, f"<{label}>", "eval")


def compile_fact(source: str, label: str = "fact") -> tuple[Expression, bool]:
    """Check and compile a fact expression.

    Returns (expression, fail_on_error) where ``fail_on_error`` tells whether the whole
    expression was wrapped in ``fail_on_error(...)``.
    """
    node = parse(source)
    fail_on_error = False
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == FAIL_ON_ERROR:
        if len(node.args) != 1 or node.keywords:
            raise ExpressionError(f"{FAIL_ON_ERROR}(...) takes exactly one expression")
        node = node.args[0]
        fail_on_error = True
    checker = _FactChecker()
    checker.visit(node)
    guarded = _Guard().visit(node)
    return Expression(source.strip(), _compile(guarded, label), frozenset(checker.names)), fail_on_error


def compile_rule(source: str, label: str = "rule") -> Expression:
    """Check and compile a rule expression (logic over fact names)."""
    node = parse(source)
    checker = _RuleChecker()
    checker.visit(node)
    return Expression(source.strip(), _compile(node, label), frozenset(checker.names))
