"""Block COPY to or from a server file or a program (STDIN/STDOUT go through the client)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis

RULE = "copy_file"


def copy_file(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    for s in statements:
        if s.kind == "copy" and s.copy_endpoint not in ("stdin", "stdout"):
            yield Reason(
                RULE,
                "block",
                f"COPY to or from a {s.copy_endpoint or 'file'} reaches outside the database",
                statement=s.index,
            )
