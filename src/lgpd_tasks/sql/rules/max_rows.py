"""Ask approval when a query asks for more rows than the scope's ``max_rows``.

Only a literal ``LIMIT``/``FETCH`` makes the count knowable before running; without one
the guarded connection stops reading at ``max_rows``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis

RULE = "max_rows"


def max_rows(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    if scope.max_rows is None:
        return
    for s in statements:
        if s.row_bound is not None and s.row_bound > scope.max_rows:
            yield Reason(
                RULE,
                "approve",
                f"asks for {s.row_bound} rows; scope {scope.name} allows {scope.max_rows}",
                statement=s.index,
            )
