"""A small declarative checker for JSON-like configuration values.

Why not a schema library: the messages must name the key path and what was expected
(``logger.max_backup_count: expected an integer, got "x"``), defaults must be filled in,
and unknown keys must become *warnings* (old installations carry keys we no longer use).
Each checker returns the normalized value and appends to ``problems``/``warnings``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from decisionengine.framework.config.errors import key_path

Path = tuple[str | int, ...]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def show(value: Any) -> str:
    """A short JSON rendering of a bad value for an error message."""
    try:
        text = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class Report:
    """What a check found: errors (the config is unusable) and warnings (it is usable)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, path: Path, message: str) -> None:
        self.problems.append(f"{key_path(path)}: {message}")

    def warning(self, path: Path, message: str) -> None:
        self.warnings.append(f"{key_path(path)}: {message}")


class Check:
    """Base checker for one value.

    When its key is absent: ``default`` is used; with ``optional=True`` the key stays absent;
    otherwise (``default`` left MISSING) the key is required.
    """

    expected = "a value"

    def __init__(self, default: Any = MISSING, *, nullable: bool = False, optional: bool = False) -> None:
        self.default = default
        self.nullable = nullable
        self.optional = optional

    def default_value(self) -> Any:
        return MISSING if self.default is MISSING else copy.deepcopy(self.default)

    def __call__(self, value: Any, path: Path, report: Report) -> Any:
        if value is None and self.nullable:
            return None
        if not self.accepts_type(value):
            report.problem(path, f"expected {self.describe_type()}, got {show(value)}")
            return MISSING
        if not self.accepts(value):
            report.problem(path, f"expected {self.describe()}, got {show(value)}")
            return MISSING
        return self.normalize(value, path, report)

    def describe_type(self) -> str:
        """The expected type alone (without ranges or choices)."""
        return self.expected + (" or null" if self.nullable else "")

    def accepts_type(self, value: Any) -> bool:
        return True

    def describe(self) -> str:
        return self.expected + (" or null" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        return True

    def normalize(self, value: Any, path: Path, report: Report) -> Any:
        return value


class AnyValue(Check):
    expected = "any value"


class Str(Check):
    expected = "a string"

    def __init__(
        self,
        default: Any = MISSING,
        *,
        choices: Sequence[str] | None = None,
        case_insensitive: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(default, **kw)
        self.choices = tuple(choices) if choices else None
        self.case_insensitive = case_insensitive

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(show(c) for c in self.choices) + (" or null" if self.nullable else "")
        return super().describe()

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, str)

    def _canonical(self, value: str) -> str | None:
        if self.choices is None:
            return value
        for choice in self.choices:
            if value == choice or (self.case_insensitive and value.upper() == choice.upper()):
                return choice
        return None

    def accepts(self, value: Any) -> bool:
        return self._canonical(value) is not None

    def normalize(self, value: Any, path: Path, report: Report) -> Any:
        return self._canonical(value)


class Bool(Check):
    expected = "true or false"

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, bool)


class Int(Check):
    expected = "an integer"

    def __init__(self, default: Any = MISSING, *, minimum: int | None = None, maximum: int | None = None, **kw: Any):
        super().__init__(default, **kw)
        self.minimum, self.maximum = minimum, maximum

    def describe(self) -> str:
        bounds = []
        if self.minimum is not None:
            bounds.append(f">= {self.minimum}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum}")
        return super().describe() + (f" {' and '.join(bounds)}" if bounds else "")

    def accepts_type(self, value: Any) -> bool:
        # jsonnet has only doubles: 3.0 is an integer, 3.5 is not.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return not (isinstance(value, float) and not value.is_integer())

    def accepts(self, value: Any) -> bool:
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def normalize(self, value: Any, path: Path, report: Report) -> Any:
        return int(value)


class Number(Int):
    expected = "a number"

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    def normalize(self, value: Any, path: Path, report: Report) -> Any:
        return value


class ListOf(Check):
    def __init__(self, item: Check, default: Any = MISSING, **kw: Any) -> None:
        super().__init__(default, **kw)
        self.item = item
        self.expected = f"a list of {item.describe()}"

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, list)

    def normalize(self, value: Any, path: Path, report: Report) -> Any:
        return [self.item(v, (*path, i), report) for i, v in enumerate(value)]


class Custom(Check):
    """A checker defined by a predicate and the phrase naming what it expects."""

    def __init__(self, expected: str, predicate: Callable[[Any], bool], default: Any = MISSING, **kw: Any) -> None:
        super().__init__(default, **kw)
        self.expected = expected
        self.predicate = predicate

    def accepts(self, value: Any) -> bool:
        return self.predicate(value)


class Obj(Check):
    """An object with known keys.

    ``extra``: what to do with unknown keys -- ``"warn"`` (kept out of the result, reported
    as unused), ``"keep"`` (passed through silently: open-ended blocks) or ``"error"``.
    """

    expected = "an object"

    def __init__(self, fields: Mapping[str, Check], default: Any = MISSING, *, extra: str = "warn", **kw: Any) -> None:
        super().__init__(default, **kw)
        self.fields = dict(fields)
        self.extra = extra

    def default_value(self) -> Any:
        if self.default is MISSING:
            return MISSING
        return self.normalize(copy.deepcopy(self.default), (), Report())

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, Mapping)

    def normalize(self, value: Any, path: Path, report: Report) -> Any:
        result: dict[str, Any] = {}
        for name, check in self.fields.items():
            if name in value:
                checked = check(value[name], (*path, name), report)
            elif check.optional:
                continue
            else:
                checked = check.default_value()
                if checked is MISSING:
                    report.problem((*path, name), f"required, expected {check.describe()}")
            if checked is not MISSING:
                result[name] = checked
        for name in value:
            if name in self.fields:
                continue
            if self.extra == "keep":
                result[name] = value[name]
            elif self.extra == "error":
                report.problem((*path, name), "unknown key")
            else:
                report.warning((*path, name), "unused key (not a decision engine setting; ignored)")
        return result


def check(schema: Check, value: Any) -> tuple[Any, Report]:
    """Check ``value`` against ``schema``: (normalized value with defaults, report)."""
    report = Report()
    return schema(value, (), report), report


class MapOf(Check):
    """An object with arbitrary keys (names chosen by the operator), each value checked by ``item``."""

    expected = "an object"

    def __init__(self, item: Check, default: Any = MISSING, **kw: Any) -> None:
        super().__init__(default, **kw)
        self.item = item

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, Mapping)

    def normalize(self, value: Any, path: Path, report: Report) -> Any:
        result = {}
        for name, item in value.items():
            checked = self.item(item, (*path, name), report)
            if checked is not MISSING:
                result[name] = checked
        return result
