"""Block code the guard cannot see into: DO, CALL, PREPARE, EXECUTE, DEALLOCATE."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis
from lgpd_tasks.sql.vocabulary import PROCEDURAL_KINDS

RULE = "procedural"


def procedural(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    for s in statements:
        if s.kind in PROCEDURAL_KINDS:
            yield Reason(
                RULE,
                "block",
                f"{s.kind.upper()} runs code the guard cannot inspect",
                table=_first(s),
                statement=s.index,
            )


def _first(s: StatementAnalysis) -> str | None:
    return min(s.tables_written) if s.tables_written else None
