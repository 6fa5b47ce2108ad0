"""Whether a WHERE condition is always true (or always false), decided from its shape."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from sqlglot import exp


def always_true(node: exp.Expr) -> bool:
    """Whether a condition holds for every row (``1=1``, ``TRUE``, ``x = x``, ``... OR TRUE``).

    >>> from sqlglot import parse_one
    >>> always_true(parse_one("a = 1 OR 2 > 1")), always_true(parse_one("a = 1"))
    (True, False)
    """
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Literal):
        return not node.is_string and _number(node) not in (None, 0.0)
    if isinstance(node, exp.Or):
        return always_true(node.left) or always_true(node.right)
    if isinstance(node, exp.And):
        return always_true(node.left) and always_true(node.right)
    if isinstance(node, exp.Not):
        return always_false(node.this)
    if isinstance(node, (exp.EQ, exp.GTE, exp.LTE, exp.NullSafeEQ)) and node.left == node.right:
        return True
    if isinstance(node, exp.Like) and isinstance(node.expression, exp.Literal):
        return node.expression.name.strip("%") == "" and node.expression.name != ""
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        return isinstance(node.this, exp.Literal)
    if isinstance(node, exp.Binary) and isinstance(node, exp.Predicate):
        return _compare(node) is True
    return False


def always_false(node: exp.Expr) -> bool:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Boolean):
        return not node.this
    if isinstance(node, exp.Literal):
        return not node.is_string and _number(node) == 0.0
    if isinstance(node, exp.And):
        return always_false(node.left) or always_false(node.right)
    if isinstance(node, exp.Or):
        return always_false(node.left) and always_false(node.right)
    if isinstance(node, exp.Not):
        return always_true(node.this)
    if isinstance(node, exp.Binary) and isinstance(node, exp.Predicate):
        return _compare(node) is False
    return False


def _number(node: exp.Literal) -> float | None:
    try:
        return float(node.name)
    except ValueError:
        return None


def _compare(node: exp.Binary) -> bool | None:
    left, right = node.left, node.right
    if not (isinstance(left, exp.Literal) and isinstance(right, exp.Literal)):
        return None
    a: float | str | None = left.name if left.is_string else _number(left)
    b: float | str | None = right.name if right.is_string else _number(right)
    if a is None or b is None or type(a) is not type(b):
        return None
    op = _COMPARISONS.get(type(node))
    return None if op is None else bool(op(a, b))


_COMPARISONS: dict[type[exp.Expr], Callable[[Any, Any], bool]] = {
    exp.EQ: operator.eq,
    exp.NEQ: operator.ne,
    exp.GT: operator.gt,
    exp.GTE: operator.ge,
    exp.LT: operator.lt,
    exp.LTE: operator.le,
}
