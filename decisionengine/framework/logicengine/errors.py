"""The error every expression check raises (facts, rules, client queries).

It lives in a module of its own so that :mod:`.limits` and :mod:`.expressions` can both
raise it without importing each other.
"""


class ExpressionError(ValueError):
    """An expression is not valid Python or uses something outside the allow-list."""


class ExpressionSyntaxError(ExpressionError):
    """An expression is not valid Python (the logic engine then raises a ``SyntaxError``)."""
