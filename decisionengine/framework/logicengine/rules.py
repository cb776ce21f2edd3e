"""Rules: boolean expressions over facts that fire actions and set new facts.

A rule ``{expression, actions, false_actions, facts}`` fires ``actions`` when its expression
is true and ``false_actions`` when it is false; each name in ``facts`` becomes a new fact
holding the rule's truth value, which other rules may use.  Because a rule can only read a
new fact after the rule setting it has run, rules are ordered by those dependencies
(graphlib) and run once in that order: that single pass is the fixed point of the cascade.
A dependency cycle, a new fact set by two rules, and a name used but defined nowhere are
load-time errors.  A new fact named like a fact is accepted with a warning, as the
reference accepts it: the first definition (the fact) wins, and the rule's declaration
of it is ignored (no row in the new facts, no effect on other rules).
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.logicengine.expressions import Expression, ExpressionError, compile_rule

RULE_KEYS = ("expression", "actions", "false_actions", "facts")


def _names(rule: str, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ExpressionError(f"rule {rule!r}: {key!r} must be a list of names, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class Rule:
    name: str
    expression: Expression
    actions: tuple[str, ...]
    false_actions: tuple[str, ...]
    new_facts: tuple[str, ...]

    @classmethod
    def parse(cls, name: str, spec: Any) -> Rule:
        """A rule from its channel-file block; ``ExpressionError`` names the rule."""
        if not isinstance(spec, Mapping):
            raise ExpressionError(f"rule {name!r}: expected an object with {', '.join(RULE_KEYS)}, got {spec!r}")
        unknown = sorted(set(spec) - set(RULE_KEYS))
        if unknown:
            raise ExpressionError(
                f"rule {name!r}: unknown key(s) {', '.join(unknown)} (expected {', '.join(RULE_KEYS)})"
            )
        if "expression" not in spec:
            raise ExpressionError(f"rule {name!r}: 'expression' is required")
        try:
            expression = compile_rule(spec["expression"], f"rule {name}")
        except ExpressionError as exc:
            raise type(exc)(f"rule {name!r} ({spec['expression']!r}): {exc}") from None
        return cls(
            name,
            expression,
            _names(name, "actions", spec.get("actions")),
            _names(name, "false_actions", spec.get("false_actions")),
            _names(name, "facts", spec.get("facts")),
        )

    def evaluate(self, facts: dict[str, Any]) -> bool:
        """The rule's truth given ``facts`` (a namespace with empty builtins)."""
        return bool(eval(self.expression.code, facts))  # a checked, compiled AST (see expressions.py)


class RuleSet:
    """Rules in dependency order, checked against the facts they may read."""

    def __init__(self, rules: Iterable[Rule], fact_names: Iterable[str]) -> None:
        self.rules = {rule.name: rule for rule in rules}
        fact_names = set(fact_names)
        problems: list[str] = []
        #: what is accepted but probably not meant (reported by the logic engine and validation)
        self.warnings: list[str] = []
        #: {rule: the new facts it declares that are ignored because a fact has the name}
        self.shadowed: dict[str, frozenset[str]] = {}
        setters: dict[str, str] = {}
        for rule in self.rules.values():
            for fact in rule.new_facts:
                if fact in fact_names:
                    self.warnings.append(
                        f"rule {rule.name!r} declares new fact {fact!r}, which is already a fact: "
                        f"the fact's definition is used and the rule's new fact {fact!r} is ignored"
                    )
                    self.shadowed[rule.name] = self.shadowed.get(rule.name, frozenset()) | {fact}
                elif fact in setters:
                    problems.append(f"new fact {fact!r} is set by two rules: {setters[fact]!r} and {rule.name!r}")
                else:
                    setters[fact] = rule.name
        known = fact_names | set(setters)
        for rule in self.rules.values():
            unknown = sorted(rule.expression.names - known)
            if unknown:
                problems.append(
                    f"rule {rule.name!r} uses {', '.join(map(repr, unknown))}, defined by no fact and no rule"
                )
        if problems:
            raise ExpressionError("; ".join(problems))
        self.setters = setters
        self.order = self._order()

    def _order(self) -> tuple[Rule, ...]:
        graph = graphlib.TopologicalSorter()
        for rule in sorted(self.rules):
            graph.add(rule, *sorted({self.setters[n] for n in self.rules[rule].expression.names if n in self.setters}))
        try:
            graph.prepare()
        except graphlib.CycleError as exc:
            cycle = exc.args[1]
            raise ExpressionError(f"rules depend on each other in a cycle: {' -> '.join(cycle)}") from None
        order: list[Rule] = []
        while graph.is_active():
            ready = sorted(graph.get_ready())
            order.extend(self.rules[name] for name in ready)
            graph.done(*ready)
        return tuple(order)

    @property
    def new_fact_names(self) -> frozenset[str]:
        return frozenset(self.setters)

    def execute(self, facts: Mapping[str, bool]) -> tuple[dict[str, list[str]], list[tuple[str, str, bool]]]:
        """Run every rule once in dependency order.

        Returns (actions: ``{rule: fired actions}`` for every rule, new facts as
        ``(rule_name, fact_name, value)`` rows in evaluation order).
        """
        namespace: dict[str, Any] = {**facts, "__builtins__": {}}
        actions: dict[str, list[str]] = {}
        new_facts: list[tuple[str, str, bool]] = []
        for rule in self.order:
            value = rule.evaluate(namespace)
            actions[rule.name] = list(rule.actions if value else rule.false_actions)
            shadowed = self.shadowed.get(rule.name, frozenset())
            for fact in rule.new_facts:
                if fact in shadowed:
                    continue  # a fact of that name was defined first and wins
                namespace[fact] = value
                new_facts.append((rule.name, fact, value))
        return actions, new_facts
