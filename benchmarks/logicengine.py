"""Logic engine benchmark: LogicEngine evaluation against plain compiled Python (the floor).

Run:  .venv/bin/python benchmarks/logicengine.py [--quick] [--facts 200] [--rules 200] [--rows 100000]

Workload: ``--facts`` facts and ``--rules`` rules over 10 DataFrame products of ``--rows``
rows each (float, int and bool columns).  Facts mix aggregations, masks, ``len``, numpy
calls, ``.loc`` selections and ``fail_on_error`` wrappers; rules combine two or three facts
with and/or/not, every fifth rule sets a new fact that later rules read (cascades), and
actions name ten publishers.

Measured in one run, interleaved (floor, engine, floor, engine, ...) so that drift hits both:

* **floor**: the same expressions compiled with ``compile(src, ..., "eval")`` and run with
  ``eval`` in a dict of the products, the functions and ``np``; the rules likewise, in
  dependency order, writing new facts into the namespace;
* **engine**: ``LogicEngine.evaluate_generation(products)`` (facts, rules, fired
  publishers, the ``de_logicengine_facts`` DataFrame) and ``LogicEngine.evaluate``.

Prints medians and the ratio engine / floor.  Target: within 1.3x.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from decisionengine.framework.logicengine.expressions import FUNCTIONS
from decisionengine.framework.logicengine.LogicEngine import LogicEngine

N_PRODUCTS = 10
N_PUBLISHERS = 10
TARGET = 1.3

FACT_TEMPLATES = (
    "{p}.x.sum() > {c}",
    "({p}.y > {i}).any()",
    "{p}.x.mean() < {f} and len({p}) > 1000",
    "not {p}.empty",
    "{p}.y.max() >= {i}",
    "np.isnan({p}.x.mean()) == False",
    "fail_on_error({p}.x.quantile(0.9) > {f})",
    "({p}.x > {f}).sum() > {i}",
    "{p}['y'].min() < {i}",
    "len({p}.loc[{p}.y > {i}]) > 0",
    "{p}.flag.all() or {p}.x.std() > {f}",
    "abs({p}.x.median() - {f}) < 1",
)


def make_products(rows: int, seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    return {
        f"df{n}": pd.DataFrame(
            {"x": rng.random(rows), "y": rng.integers(0, 1000, rows), "flag": rng.random(rows) > 0.01}
        )
        for n in range(N_PRODUCTS)
    }


def make_config(n_facts: int, n_rules: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    facts = {}
    for n in range(n_facts):
        template = FACT_TEMPLATES[n % len(FACT_TEMPLATES)]
        facts[f"fact{n}"] = template.format(
            p=f"df{rng.randrange(N_PRODUCTS)}", c=rng.randint(1000, 100000), i=rng.randint(0, 999), f=rng.random()
        )
    rules: dict[str, dict[str, Any]] = {}
    new_facts: list[str] = []
    fact_names = list(facts)
    for n in range(n_rules):
        operands = rng.sample(fact_names, 2) + ([rng.choice(new_facts)] if new_facts and n % 3 == 0 else [])
        parts = [f"not {name}" if rng.random() < 0.3 else name for name in operands]
        joiner = " and " if n % 2 else " or "
        rule: dict[str, Any] = {
            "expression": joiner.join(parts),
            "actions": [f"p{rng.randrange(N_PUBLISHERS)}"],
            "false_actions": [f"p{rng.randrange(N_PUBLISHERS)}"] if n % 4 == 0 else [],
        }
        if n % 5 == 0:
            rule["facts"] = [f"new{n}"]
            new_facts.append(f"new{n}")
        rules[f"rule{n}"] = rule
    return {"facts": facts, "rules": rules, "channel_name": "benchmark"}


def make_floor(config: dict[str, Any], engine: LogicEngine) -> Callable[[dict[str, Any]], tuple[dict, dict]]:
    """The same expressions as plain compiled Python: compile + eval, no checks, no bookkeeping."""
    fact_code = []
    for name, source in config["facts"].items():
        wrapped = source.startswith("fail_on_error(")
        text = source[len("fail_on_error(") : -1] if wrapped else source
        fact_code.append((name, compile(text, f"<{name}>", "eval"), wrapped))
    rule_code = [
        (
            rule.name,
            compile(config["rules"][rule.name]["expression"], f"<{rule.name}>", "eval"),
            rule.actions,
            rule.false_actions,
            rule.new_facts,
        )
        for rule in engine.rule_set.order  # the same dependency order the engine uses
    ]
    functions = {**FUNCTIONS, "np": np}

    def floor(products: dict[str, Any]) -> tuple[dict, dict]:
        namespace = {**products, **functions}
        facts = {}
        for name, code, wrapped in fact_code:
            if wrapped:
                try:
                    facts[name] = bool(eval(code, namespace))
                except Exception:
                    facts[name] = False
            else:
                facts[name] = bool(eval(code, namespace))
        rule_namespace = dict(facts)
        actions = {}
        for name, code, on_true, on_false, new in rule_code:
            value = bool(eval(code, rule_namespace))
            actions[name] = list(on_true if value else on_false)
            for fact in new:
                rule_namespace[fact] = value
        return facts, actions

    return floor


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--facts", type=int, default=200)
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15, help="timed evaluations of each kind")
    parser.add_argument("--quick", action="store_true", help="10k rows, 5 repetitions (a smoke run)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = 10_000, 5

    products = make_products(args.rows, args.seed)
    config = make_config(args.facts, args.rules, args.seed)
    load_time = timed(lambda: LogicEngine(config))
    engine = LogicEngine(config)
    floor = make_floor(config, engine)

    # same answers, or the comparison means nothing
    floor_facts, floor_actions = floor(products)
    result = engine.evaluate_generation(products)
    assert result.facts == floor_facts, "engine and floor disagree on facts"
    assert result.actions == floor_actions, "engine and floor disagree on actions"

    for _ in range(2):  # warm-up
        floor(products)
        engine.evaluate_generation(products)
    times: dict[str, list[float]] = {"floor": [], "evaluate_generation": [], "evaluate": []}
    for _ in range(args.repeat):
        times["floor"].append(timed(lambda: floor(products)))
        times["evaluate_generation"].append(timed(lambda: engine.evaluate_generation(products)))
        times["floor"].append(timed(lambda: floor(products)))
        times["evaluate"].append(timed(lambda: engine.evaluate(products)))

    floor_median = statistics.median(times["floor"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append([name, f"{median * 1e3:.2f}", f"{min(values) * 1e3:.2f}", f"{median / floor_median:.3f}x"])
    print(
        f"{args.facts} facts, {args.rules} rules ({len(engine.rule_set.new_fact_names)} new facts), "
        f"{N_PRODUCTS} products x {args.rows:,} rows; {args.repeat} interleaved runs; "
        f"engine load (parse + check + compile): {load_time * 1e3:.1f} ms"
    )
    print(tabulate(rows, headers=["evaluation", "median ms", "min ms", "ratio vs floor"], tablefmt="github"))
    worst = max(statistics.median(times[k]) for k in ("evaluate_generation", "evaluate")) / floor_median
    verdict = "within" if worst <= TARGET else "OVER"
    print(f"worst ratio {worst:.3f}x: {verdict} the {TARGET}x target")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
