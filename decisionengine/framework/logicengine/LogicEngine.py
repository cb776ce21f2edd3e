"""``LogicEngine``: the module a channel's ``logicengines`` block configures.

::

    logicengines: {
      le: {
        module: "decisionengine.framework.logicengine.LogicEngine",
        name: "LogicEngine",
        parameters: {
          facts: {too_many: "len(jobs) > 100", cheap: "fail_on_error(prices.cost.min() < 0.1)"},
          rules: {expand: {expression: "too_many and cheap", actions: ["request"], facts: ["expanding"]}},
        },
      },
    }

Everything is parsed and checked when the module is constructed, so a bad expression stops
the channel before anything runs.  The products the facts read become the instance's
``_consumes`` (type unchecked), which is how channel validation knows them; the engine
produces :data:`FACTS_PRODUCT` (``de_logicengine_facts``) for the publishers.

As the reference's: ``produces()`` is ``["actions", "newfacts"]`` and ``consumes()`` the
product names the facts read; a config without ``facts`` is a ``KeyError``; a fact or rule
that is not valid Python raises a ``SyntaxError`` (:class:`LogicEngineSyntaxError`); a rule
declaring a new fact named like a fact only warns (the fact's definition wins).
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from decisionengine.framework.logicengine.errors import ExpressionSyntaxError
from decisionengine.framework.logicengine.expressions import ExpressionError, evaluation_functions
from decisionengine.framework.logicengine.facts import Fact, explain
from decisionengine.framework.logicengine.rules import Rule, RuleSet
from decisionengine.framework.modules.decorators import supports_config
from decisionengine.framework.modules.Module import Module
from decisionengine.framework.modules.parameter import Parameter

FACTS_PRODUCT = "de_logicengine_facts"
FACTS_COLUMNS = ("rule_name", "fact_name", "fact_value")


class LogicEngineConfigError(ExpressionError):
    """The facts or rules of a logic engine are invalid; ``problems`` lists each, naming the fact or rule."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))

    def __reduce__(self) -> tuple[type[LogicEngineConfigError], tuple[list[str]]]:
        return type(self), (self.problems,)


class LogicEngineSyntaxError(LogicEngineConfigError, SyntaxError):
    """A fact or rule is not valid Python: also a ``SyntaxError``, which is what the reference
    raised for it (its facts were compiled with ``compile``)."""

    def __init__(self, problems: Iterable[str]) -> None:
        super().__init__(problems)
        self.msg = self.args[0]  # what SyntaxError prints (its own __init__ is not the one that ran)


@dataclass(frozen=True)
class LogicEngineResult:
    """Everything one evaluation decides, for the task manager.

    ``publishers``: the publisher names fired by any rule; ``facts_frame``: the value of
    the product ``de_logicengine_facts``; ``suppressed_errors``: ``fail_on_error`` facts
    that raised (and are therefore False), with the error text.
    """

    facts: dict[str, bool]
    new_facts: dict[str, bool]
    actions: dict[str, list[str]]
    publishers: frozenset[str]
    facts_frame: pd.DataFrame
    suppressed_errors: dict[str, str]


def is_fact_name(name: Any) -> bool:
    """Fact names are read by rule expressions, so they must be usable as Python names."""
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


def facts_frame(rows: Iterable[tuple[str, str, bool]]) -> pd.DataFrame:
    """The ``de_logicengine_facts`` DataFrame (columns rule_name, fact_name, fact_value)."""
    rows = list(rows)
    return pd.DataFrame(
        {
            "rule_name": pd.Series([r[0] for r in rows], dtype=object),
            "fact_name": pd.Series([r[1] for r in rows], dtype=object),
            "fact_value": pd.Series([bool(r[2]) for r in rows], dtype=bool),
        },
        columns=list(FACTS_COLUMNS),
    )


@supports_config(
    Parameter("facts", type=dict, default={}, comment="{fact name: boolean expression over products}"),
    Parameter("rules", type=dict, default={}, comment="{rule name: {expression, actions, false_actions, facts}}"),
)
class LogicEngine(Module):
    _produces = {FACTS_PRODUCT: pd.DataFrame}

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        if not isinstance(cfg, Mapping) or "facts" not in cfg:
            # the reference reads cfg["facts"]: LogicEngine({}) is a KeyError there too
            raise KeyError(
                "facts: a LogicEngine's configuration needs 'facts' ({name: expression}), "
                "besides 'rules' and 'channel_name'"
            )
        super().__init__(cfg)
        facts_config = cfg.get("facts") or {}
        rules_config = cfg.get("rules") or {}
        problems: list[str] = []
        syntax_errors = False
        if not isinstance(facts_config, Mapping):
            problems.append(f"'facts' must be an object {{name: expression}}, got {facts_config!r}")
            facts_config = {}
        if not isinstance(rules_config, Mapping):
            problems.append(f"'rules' must be an object {{name: rule}}, got {rules_config!r}")
            rules_config = {}
        self.facts: dict[str, Fact] = {}
        for name, source in facts_config.items():
            if not is_fact_name(name):
                problems.append(f"fact {name!r}: a fact name must be an identifier not starting with '_'")
                continue
            try:
                self.facts[name] = Fact.parse(name, source)
            except ExpressionError as exc:
                problems.append(str(exc))
                syntax_errors = syntax_errors or isinstance(exc, ExpressionSyntaxError)
        rules: list[Rule] = []
        for name, spec in rules_config.items():
            try:
                rule = Rule.parse(name, spec)
            except ExpressionError as exc:
                problems.append(str(exc))
                syntax_errors = syntax_errors or isinstance(exc, ExpressionSyntaxError)
                continue
            bad = [fact for fact in rule.new_facts if not is_fact_name(fact)]
            if bad:
                problems.append(f"rule {name!r}: new fact name(s) {bad} must be identifiers not starting with '_'")
            rules.append(rule)
        if not problems:
            try:
                self.rule_set = RuleSet(rules, facts_config)
            except ExpressionError as exc:
                problems.append(str(exc))
        if problems:
            raise (LogicEngineSyntaxError if syntax_errors else LogicEngineConfigError)(problems)
        #: what was accepted with a warning (channel validation reports these too)
        self.config_warnings: list[str] = list(self.rule_set.warnings)
        for warning in self.config_warnings:
            self.logger.warning("logic engine configuration", warning=warning)
        self._functions = evaluation_functions()
        self._products = sorted(set().union(*(fact.products for fact in self.facts.values())))
        self._consumes = dict.fromkeys(self._products)

    # -- the reference's interface --------------------------------------------------------------

    def produces(self) -> list[str]:
        """What ``evaluate`` returns, named as the reference does.  (The product the channel
        stores for publishers is :data:`FACTS_PRODUCT`, declared in ``_produces``.)"""
        return ["actions", "newfacts"]

    def consumes(self) -> list[str]:
        """The product names the facts read."""
        return list(self._products)

    # -- introspection ------------------------------------------------------------------------

    @property
    def consumed_products(self) -> list[str]:
        """Every product name the facts read."""
        return list(self._products)

    @property
    def action_names(self) -> frozenset[str]:
        """Every action (publisher name) any rule may fire."""
        return frozenset(a for r in self.rule_set.rules.values() for a in (*r.actions, *r.false_actions))

    def unknown_products(self, available: Iterable[str]) -> dict[str, list[str]]:
        """``{fact: [product names it reads that are not in available]}`` (empty when all are known)."""
        available = set(available)
        return {
            name: sorted(fact.products - available) for name, fact in self.facts.items() if fact.products - available
        }

    # -- evaluation -----------------------------------------------------------------------------

    def _namespace(self, db: Any) -> dict[str, Any]:
        namespace: dict[str, Any] = {}
        for product in self._products:
            try:
                namespace[product] = db[product]
            except KeyError:
                continue  # facts reading it fail with a clear message (or are False with fail_on_error)
        namespace.update(self._functions)
        return namespace

    def _evaluate_facts(self, db: Any) -> tuple[dict[str, bool], dict[str, str]]:
        namespace = self._namespace(db)
        values: dict[str, bool] = {}
        suppressed: dict[str, str] = {}
        for name, fact in self.facts.items():
            value, error = fact.evaluate(namespace)
            values[name] = value
            if error is not None:
                suppressed[name] = explain(error)
                self.logger.warning("fact failed and is False (fail_on_error)", fact=name, error=suppressed[name])
        return values, suppressed

    def evaluate_facts(self, db: Any) -> dict[str, bool]:
        """``{fact: bool}`` for every configured fact, from the products in ``db`` (any mapping).

        A fact that fails and is not wrapped in ``fail_on_error`` raises its own exception
        (``NameError`` for a product missing from ``db``, ``IndexError``...), with a note
        naming the fact, its expression and the product types it saw.
        """
        return self._evaluate_facts(db)[0]

    def evaluate(self, db: Any) -> tuple[dict[str, list[str]], pd.DataFrame]:
        """(actions, newfacts): ``{rule: fired actions}`` and the new facts DataFrame."""
        result = self.evaluate_generation(db)
        return result.actions, result.facts_frame

    def evaluate_generation(self, db: Any) -> LogicEngineResult:
        """Facts, rules, fired publishers and the ``de_logicengine_facts`` product in one call."""
        facts, suppressed = self._evaluate_facts(db)
        actions, rows = self.rule_set.execute(facts)
        return LogicEngineResult(
            facts=facts,
            new_facts={fact: value for _rule, fact, value in rows},
            actions=actions,
            publishers=frozenset(a for fired in actions.values() for a in fired),
            facts_frame=facts_frame(rows),
            suppressed_errors=suppressed,
        )
