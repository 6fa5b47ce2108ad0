"""Block functions with side effects or file, network or process access, wherever called."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis
from lgpd_tasks.sql.vocabulary import is_side_effect_function

RULE = "side_effect_function"


def side_effect_function(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    for s in statements:
        for name in sorted(s.functions):
            if is_side_effect_function(name):
                yield Reason(
                    RULE,
                    "block",
                    f"{name}() has side effects or reaches files, the network or the server",
                    statement=s.index,
                )
