"""Block server administration: LOCK, VACUUM, ANALYZE, ALTER SYSTEM, LOAD, LISTEN/NOTIFY..."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis
from lgpd_tasks.sql.vocabulary import ADMIN_KINDS

RULE = "admin"


def admin(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    for s in statements:
        if s.kind in ADMIN_KINDS:
            yield Reason(
                RULE,
                "block",
                f"{s.kind.upper()} is server administration; tasks may not run it",
                table=_first(s),
                statement=s.index,
            )


def _first(s: StatementAnalysis) -> str | None:
    return min(s.tables_written) if s.tables_written else None
