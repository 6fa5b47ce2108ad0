"""Block DDL: CREATE, DROP, ALTER, TRUNCATE, COMMENT, SELECT ... INTO (it creates a table)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis
from lgpd_tasks.sql.vocabulary import DDL_KINDS

RULE = "ddl"


def ddl(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    for s in statements:
        if s.kind in DDL_KINDS:
            yield Reason(
                RULE,
                "block",
                f"{s.kind.upper()} changes the schema; tasks may not run DDL",
                table=_first(s),
                statement=s.index,
            )


def _first(s: StatementAnalysis) -> str | None:
    return min(s.tables_written) if s.tables_written else None
