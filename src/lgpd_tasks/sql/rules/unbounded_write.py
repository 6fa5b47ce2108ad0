"""Ask approval for DELETE or UPDATE with no WHERE, or a WHERE that is always true."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis

RULE = "unbounded_write"


def unbounded_write(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    for s in statements:
        for table in sorted(s.unbounded_writes):
            yield Reason(
                RULE,
                "approve",
                f"DELETE or UPDATE of {table} touches every row (no WHERE or an always-true one)",
                table=table,
                statement=s.index,
            )
