"""Block what the guard cannot understand: unparsable text, opaque commands, unknown kinds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis
from lgpd_tasks.sql.vocabulary import KNOWN_KINDS

RULE = "unparsable"


def unparsable(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    for s in statements:
        if s.kind not in KNOWN_KINDS:
            what = s.problem or "is not a statement the guard understands"
            yield Reason(RULE, "block", f"statement {s.kind!r} {what}", statement=s.index)
