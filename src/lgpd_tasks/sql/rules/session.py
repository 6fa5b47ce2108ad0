"""Block role and session changes: SET (ROLE, SESSION AUTHORIZATION...), RESET, set_config()."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis
from lgpd_tasks.sql.vocabulary import SESSION_FUNCTIONS, SESSION_KINDS

RULE = "session"


def session(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    for s in statements:
        if s.kind in SESSION_KINDS:
            yield Reason(
                RULE,
                "block",
                f"{s.kind.upper()} changes the role or session settings",
                statement=s.index,
            )
        for name in sorted(s.functions & SESSION_FUNCTIONS):
            yield Reason(RULE, "block", f"{name}() changes session settings", statement=s.index)
