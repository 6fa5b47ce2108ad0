"""Block more than one statement in a string unless the scope allows it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis

RULE = "multiple_statements"


def multiple_statements(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    if len(statements) > 1 and not scope.allow_multiple_statements:
        yield Reason(
            RULE,
            "block",
            f"{len(statements)} statements in one string; scope {scope.name} allows one",
            statement=statements[1].index,
        )
