"""Resource limits shared by fact expressions and client queries.

An allow-list decides *what* an expression may do; these limits decide *how much*.  A
single operator can keep Python busy for hours, or allocate terabytes, while it holds the
GIL: ``2 ** 10**10`` (a ten-billion-bit integer), ``1 << 10**10``, ``"a" * 10**10``,
``[0] * 10**10``, ``"%0999999999d" % 1``.  No other thread can interrupt such a
computation, so in the process that runs it the only defence is not to start it.

* **Static checks**, when an expression is compiled (a fact when its channel loads, a
  client query before it reaches a worker): :func:`check_operation` for ``**``, ``<<``,
  ``*`` and ``%`` whose operands are literals, :func:`check_counted_call` for methods
  that allocate by a count (``repeat``, ``center``, ``zfill``...).
* **Runtime guards**, for what only the values tell (is ``name * n`` a number times a
  number, or a string column repeated ``n`` times?): :func:`checked_multiply` and
  :func:`checked_modulo`.  Compiled expressions call them in place of ``*`` and ``%``; they
  cost one type check when the operands are numbers.

The bounds are deliberately small: real facts and queries compare and aggregate, they do
not build big values.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from decisionengine.framework.logicengine.errors import ExpressionError

#: the largest exponent of ``**`` (and of a power of a power, in total: ``(x ** 8) ** 8``)
MAX_EXPONENT = 64
#: the largest shift of ``<<``
MAX_SHIFT = 64
#: the most times a string, list or tuple (or a column of them) may be repeated
MAX_REPETITION = 1000
#: the most characters or items a repetition may produce, in total
MAX_REPEATED_LENGTH = 1_000_000
#: the widest field (or highest precision) of ``%`` formatting and of ljust/center/zfill...
MAX_FORMAT_WIDTH = 1000

#: methods that allocate (or loop) by a count: {name: (argument name, bound)}; the count
#: is the first positional argument or that keyword, and must be a literal within the bound
COUNTED_METHODS: dict[str, tuple[str, int]] = {
    "repeat": ("repeats", MAX_REPETITION),
    "tile": ("reps", MAX_REPETITION),
    "ljust": ("width", MAX_FORMAT_WIDTH),
    "rjust": ("width", MAX_FORMAT_WIDTH),
    "center": ("width", MAX_FORMAT_WIDTH),
    "zfill": ("width", MAX_FORMAT_WIDTH),
    "pad": ("width", MAX_FORMAT_WIDTH),
    "expandtabs": ("tabsize", MAX_EXPONENT),
    "pow": ("other", MAX_EXPONENT),
}


class ResourceLimitError(ValueError):
    """An operation would exceed a resource limit (raised while evaluating, by the guards)."""


# -- literals ------------------------------------------------------------------------------------

_FOLDABLE: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def literal_number(node: ast.expr) -> int | float | None:
    """The value of a literal number (``64``, ``-0.5``, ``1 / 3``), None for anything else.

    Only ``+ - * /`` are folded, never ``**``: folding must itself be cheap.
    """
    if isinstance(node, ast.Constant):
        value = node.value
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = literal_number(node.operand)
        if value is None:
            return None
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLDABLE:
        left, right = literal_number(node.left), literal_number(node.right)
        if left is None or right is None:
            return None
        try:
            return _FOLDABLE[type(node.op)](left, right)
        except (ArithmeticError, ValueError):
            return None
    return None


def literal_count(node: ast.expr) -> int | None:
    """A literal integer (``3``, ``-1``, ``True``), None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return int(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = literal_count(node.operand)
        if value is None:
            return None
        return -value if isinstance(node.op, ast.USub) else value
    return None


def literal_sequence_length(node: ast.expr) -> int | None:
    """The length of a literal string, bytes, list or tuple, or of sums and repetitions of
    them (``"ab" * 3`` -> 6); None when ``node`` is not one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        return len(node.value)
    if isinstance(node, ast.List | ast.Tuple):
        return len(node.elts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = literal_sequence_length(node.left), literal_sequence_length(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        for sequence, count in ((node.left, node.right), (node.right, node.left)):
            length, times = literal_sequence_length(sequence), literal_count(count)
            if length is not None and times is not None:
                return length * max(times, 0)
    return None


# -- static checks ---------------------------------------------------------------------------


def _source(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 80 else text[:77] + "..."


def _power_degree(node: ast.BinOp) -> float:
    """How many times ``**`` nodes multiply the size of their base, in total."""
    exponent = literal_number(node.right)
    own = max(1.0, abs(exponent)) if exponent is not None else float("inf")
    inner = max((_power_degree(n) for n in ast.walk(node.left) if _is_power(n)), default=1.0)
    return own * inner


def _is_power(node: ast.AST) -> bool:
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)


def _check_power(node: ast.BinOp) -> None:
    exponent = literal_number(node.right)
    allowed = f"a literal number between -{MAX_EXPONENT} and {MAX_EXPONENT}"
    if exponent is None:
        raise ExpressionError(f"the exponent of ** must be {allowed}, not {_source(node.right)!r}")
    if not abs(exponent) <= MAX_EXPONENT:
        raise ExpressionError(f"the exponent of ** must be {allowed}, not {exponent!r} (in {_source(node)!r})")
    if _power_degree(node) > MAX_EXPONENT:
        raise ExpressionError(
            f"a power of a power may raise to at most {MAX_EXPONENT} in total ((x ** 8) ** 8), not {_source(node)!r}"
        )


def _check_shift(node: ast.BinOp) -> None:
    shift = literal_count(node.right)
    if shift is None or not 0 <= shift <= MAX_SHIFT:
        raise ExpressionError(
            f"the right operand of << must be a literal integer between 0 and {MAX_SHIFT}, not {_source(node.right)!r}"
        )


def _check_literal_repetition(node: ast.BinOp) -> None:
    for sequence, count in ((node.left, node.right), (node.right, node.left)):
        length = literal_sequence_length(sequence)
        if length is None:
            continue
        times = literal_count(count)
        if times is None:
            raise ExpressionError(
                f"a string, list or tuple may only be repeated by a literal count (at most {MAX_REPETITION}), "
                f"not by {_source(count)!r}"
            )
        check_repetition(length, abs(times), _source(node))


def check_repetition(length: int, times: int, what: str) -> None:
    """Refuse repeating ``length`` items ``times`` times beyond the bounds (static or runtime)."""
    if times > MAX_REPETITION:
        raise ResourceLimitError(f"{what}: repeats {times} times; at most {MAX_REPETITION} are allowed")
    if length * times > MAX_REPEATED_LENGTH:
        raise ResourceLimitError(
            f"{what}: would make {length * times} characters or items; at most {MAX_REPEATED_LENGTH} are allowed"
        )


_FORMAT_FIELD = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)?", re.DOTALL)


def check_format_string(text: str | bytes) -> None:
    """Refuse ``%`` formatting whose field widths or precisions are ``*`` or too big."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    for width, precision, _conversion in _FORMAT_FIELD.findall(text):
        for value in (width, precision):
            if value == "*":
                raise ResourceLimitError("% formatting may not take a field width or precision from its arguments")
            if value and int(value) > MAX_FORMAT_WIDTH:
                raise ResourceLimitError(
                    f"% formatting with a field width or precision of {int(value)}; at most {MAX_FORMAT_WIDTH}"
                )


def _is_text_literal(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)


def check_operation(node: ast.BinOp) -> None:
    """Refuse an operator whose literal operands exceed the limits (see the module docstring).

    Raises :class:`~.errors.ExpressionError` naming the construct and the bound.
    """
    try:
        if isinstance(node.op, ast.Pow):
            _check_power(node)
        elif isinstance(node.op, ast.LShift):
            _check_shift(node)
        elif isinstance(node.op, ast.Mult):
            _check_literal_repetition(node)
        elif isinstance(node.op, ast.Mod) and _is_text_literal(node.left):
            check_format_string(node.left.value)  # type: ignore[attr-defined]
    except ResourceLimitError as exc:
        raise ExpressionError(str(exc)) from None


def check_counted_call(node: ast.Call, method: str) -> None:
    """Refuse a call of a :data:`COUNTED_METHODS` method whose count is not a small literal."""
    if method not in COUNTED_METHODS:
        return
    keyword, bound = COUNTED_METHODS[method]
    counts = [node.args[0]] if node.args else []
    counts += [k.value for k in node.keywords if k.arg == keyword]
    for count in counts:
        value = literal_number(count)
        if value is None or not abs(value) <= bound:
            raise ExpressionError(
                f"the argument {keyword!r} of {method}() must be a literal number between -{bound} and {bound}, "
                f"not {_source(count)!r}"
            )


# -- runtime guards --------------------------------------------------------------------------

_SIZED = (str, bytes, bytearray, list, tuple)


def _text_like(value: Any) -> bool:
    """Arrays and columns whose elements may be strings (object or string dtypes)."""
    dtype = getattr(value, "dtype", None)
    return dtype is not None and (getattr(dtype, "kind", "") in "OSU" or isinstance(dtype, pd.StringDtype))


def _elements(value: Any) -> Iterator[Any]:
    if isinstance(value, pd.DataFrame):
        for _, column in value.items():
            if _text_like(column):
                yield from column.array
    elif isinstance(value, pd.Series | pd.Index | np.ndarray) and _text_like(value):
        yield from np.asarray(value, dtype=object).ravel()


def _sequence_size(value: Any) -> int | None:
    """Total length of what ``value * n`` would repeat; None when it repeats nothing."""
    if isinstance(value, _SIZED):
        return len(value)
    sizes = [len(v) for v in _elements(value) if isinstance(v, _SIZED)]
    return sum(sizes) if sizes else None


def _largest_count(value: Any) -> int | None:
    """The largest ``|n|`` of an integer (or integer column) used as a count; None otherwise."""
    if isinstance(value, bool | int | np.integer | np.bool_):
        return abs(int(value))
    if isinstance(value, pd.Series | pd.Index | np.ndarray) and getattr(value.dtype, "kind", "") in "iub":
        return int(np.abs(np.asarray(value, dtype=np.int64)).max()) if len(value) else 0
    return None


def checked_multiply(left: Any, right: Any) -> Any:
    """``left * right``, refusing a repetition (of a string, list, tuple, or a column of
    them) beyond :data:`MAX_REPETITION` times or :data:`MAX_REPEATED_LENGTH` items."""
    for sequence, count in ((left, right), (right, left)):
        times = _largest_count(count)
        if times is None:
            continue
        length = _sequence_size(sequence)
        if length is not None:
            check_repetition(length, times, f"repeating a {type(sequence).__name__}")
    return left * right


def _format_strings(value: Any) -> Iterator[str | bytes]:
    if isinstance(value, str | bytes):
        yield value
    else:
        yield from (v for v in _elements(value) if isinstance(v, str | bytes))


def checked_modulo(left: Any, right: Any) -> Any:
    """``left % right``, refusing string formatting with huge (or argument-given) widths."""
    for text in _format_strings(left):
        check_format_string(text)
    return left % right


def refused_string_formatting(left: Any, right: Any) -> Any:
    """``left % right`` for numbers only: client queries format no strings."""
    if any(True for _ in _format_strings(left)):
        raise ResourceLimitError("string formatting with % is not allowed; % may only take the remainder of numbers")
    return left % right
