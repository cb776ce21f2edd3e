"""The expression allow-list: what facts and rules may say, and escapes refused at load time."""

import pytest

from decisionengine.framework.logicengine.LogicEngine import LogicEngine, LogicEngineConfigError


def engine(facts=None, rules=None):
    return LogicEngine({"facts": facts or {}, "rules": rules or {}, "channel_name": "test"})


@pytest.mark.parametrize(
    "expression",
    [
        "val > 10",
        "vals.sum() > 40",
        "b.c == 10",
        "not df.empty",
        "len(df) > 3",
        "(df.x > 3).any()",
        "df['x'].iloc[0] in [1, 2, 3]",
        "df.x.between(1, 5).all() or -val < 2 ** 3",
        "abs(min(val, 3) - max([1, 2])) >= round(1.4)",
        "np.isnan(df.x.mean()) is False or numpy.sqrt(val) > 1",
        "df.loc[df.x > 1, 'x'].sum(min_count=1) > 0",
        "{'a': 1}['a'] == 1 and (1, 2) != {1, 2}",
        "val if val > 0 else -val",
        "df.groupby('k').x.sum().max() > 3",
        "(df.x > 1) & ~(df.x > 4) | (df.x == 0)",
        "str(val).startswith('1')",
        "df.columns.tolist() == ['x']",
    ],
)
def test_allowed_fact_expressions_load(expression):
    assert "f" in engine({"f": expression}).facts


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('true')", "'__import__'"),
        ("().__class__", "'__class__'"),
        ("().__class__.__bases__[0].__subclasses__()", "'__class__'"),
        ("lambda: 1", "lambda"),
        ("(lambda: 1)()", "lambda"),
        ("[x for x in df.x]", "list comprehension"),
        ("any(x > 1 for x in vals)", "generator expression"),
        ("(y := 1)", "assignment expression"),
        ("df.__dict__", "'__dict__'"),
        ("_private > 1", "'_private'"),
        ("df.eval('x + 1').sum() > 0", "'eval'"),
        ("df.query('x > 1').empty", "'query'"),
        ("df.pipe(len) > 1", "'pipe'"),
        ("df.apply(len).sum() > 1", "'apply'"),
        ("df.x.map(str).empty", "'map'"),
        ("df.agg('sum').x > 1", "'agg'"),
        ("df.to_csv('/tmp/x') is None", "'to_csv'"),
        ("df.values.tofile('/tmp/x') is None", "'tofile'"),
        ("df.style is None", "'style'"),
        ("df.plot() is None", "'plot'"),
        ("df.drop(columns=['x'], inplace=True) is None", "inplace"),
        ("vals.append(1) is None", "'append'"),
        ("'{0.__class__}'.format(df)", "'format'"),
        ("f'{df}' == ''", "f-string"),
        ("open('/etc/passwd')", "'open' is not an allowed function"),
        ("eval('1')", "'eval' is not an allowed function"),
        ("getattr(df, 'x')", "'getattr' is not an allowed function"),
        ("df(1)", "'df' is not an allowed function"),
        ("np.load('/tmp/x')", "np.load is not an allowed numpy function"),
        ("np", "'np' may only be used as np.<function>"),
        ("len", "function 'len' may only be called"),
        ("len.__self__", "attribute '__self__' of function 'len'"),
        ("str.join(',', vals)", "attribute 'join' of function 'str'"),
        ("max(*vals) > 1", "'*' unpacking"),
        ("dict(**kw)", "'dict' is not an allowed function"),
        ("len(**kw) > 1", "'**' unpacking"),
        ("df.x.sum() > 1 if True else fail_on_error(x)", "fail_on_error"),
        ("x >", "invalid syntax"),
        ("", "non-empty expression"),
        ("await x", "await"),
    ],
)
def test_unsafe_or_invalid_fact_refused_at_load_time(expression, reason):
    with pytest.raises(LogicEngineConfigError) as info:
        engine({"bad_fact": expression})
    message = str(info.value)
    assert "fact 'bad_fact'" in message
    assert reason in message


def test_unsafe_expression_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(LogicEngineConfigError):
        engine({"evil": f"__import__('os').system('touch {marker}') == 0"})
    assert not marker.exists()


def test_every_bad_fact_and_rule_is_reported():
    with pytest.raises(LogicEngineConfigError) as info:
        engine({"a": "lambda: 1", "b": "x > 1", "c": "().__class__"}, {"r": {"expression": "b +"}})
    assert len(info.value.problems) == 3
    assert [p.split(" (")[0] for p in info.value.problems] == ["fact 'a'", "fact 'c'", "rule 'r'"]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("f1 + 1", "BinOp is not allowed in a rule"),
        ("len(f1)", "Call is not allowed in a rule"),
        ("f1 > f2", "comparison Gt is not allowed"),
        ("f1 and 1", "constant 1 is not allowed"),
        ("f1.__class__", "Attribute is not allowed in a rule"),
        ("__import__", "'__import__' is not allowed"),
        ("-f1", "operator USub is not allowed in a rule"),
    ],
)
def test_rule_expressions_are_logic_over_facts(expression, reason):
    with pytest.raises(LogicEngineConfigError) as info:
        engine({"f1": "a > 1", "f2": "a > 2"}, {"r": {"expression": expression}})
    assert "rule 'r'" in str(info.value) and reason in str(info.value)


def test_rule_names_a_fact_defined_nowhere():
    with pytest.raises(LogicEngineConfigError, match="rule 'r' uses 'ghost', defined by no fact and no rule"):
        engine({"f": "a > 1"}, {"r": {"expression": "f and ghost"}})


def test_rule_block_shape_is_checked():
    with pytest.raises(LogicEngineConfigError, match="rule 'r': unknown key"):
        engine({"f": "a > 1"}, {"r": {"expression": "f", "action": ["p"]}})
    with pytest.raises(LogicEngineConfigError, match="rule 'r': 'expression' is required"):
        engine({"f": "a > 1"}, {"r": {"actions": ["p"]}})
    with pytest.raises(LogicEngineConfigError, match="rule 'r': 'actions' must be a list of names"):
        engine({"f": "a > 1"}, {"r": {"expression": "f", "actions": "p"}})
    with pytest.raises(LogicEngineConfigError, match="'facts' must be an object"):
        engine(["not", "a", "mapping"])


def test_rule_dependency_cycle_is_a_load_time_error():
    rules = {
        "r1": {"expression": "f and n2", "facts": ["n1"]},
        "r2": {"expression": "n1", "facts": ["n2"]},
    }
    with pytest.raises(LogicEngineConfigError, match=r"rules depend on each other in a cycle: r(1|2) -> r(1|2) -> r"):
        engine({"f": "a > 1"}, rules)


def test_new_fact_set_twice():
    # (a new fact named like a fact is accepted with a warning: tests/compat/test_reference_api.py)
    with pytest.raises(LogicEngineConfigError, match="new fact 'n' is set by two rules: 'r1' and 'r2'"):
        engine({"f": "a > 1"}, {"r1": {"expression": "f", "facts": ["n"]}, "r2": {"expression": "f", "facts": ["n"]}})


@pytest.mark.parametrize("name", ["my-fact", "_hidden", "class", "2fast"])
def test_fact_names_must_be_identifiers(name):
    with pytest.raises(LogicEngineConfigError, match="must be an identifier"):
        engine({name: "a > 1"})


def test_new_fact_names_must_be_identifiers():
    with pytest.raises(LogicEngineConfigError, match=r"rule 'r': new fact name\(s\) \['bad name'\]"):
        engine({"f": "a > 1"}, {"r": {"expression": "f", "facts": ["bad name"]}})
