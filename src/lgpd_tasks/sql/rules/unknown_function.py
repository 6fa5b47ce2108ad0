"""Block functions that are neither modelled by sqlglot nor known built-ins (user-defined...)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis
from lgpd_tasks.sql.vocabulary import (
    KNOWN_SAFE_FUNCTIONS,
    SESSION_FUNCTIONS,
    is_side_effect_function,
)

RULE = "unknown_function"


def unknown_function(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    for s in statements:
        for name in sorted(s.unknown_functions):
            if (
                name in KNOWN_SAFE_FUNCTIONS
                or name in SESSION_FUNCTIONS
                or is_side_effect_function(name)
            ):
                continue  # allowed, or refused by a more specific rule
            yield Reason(
                RULE,
                "block",
                f"{name}() is not a known built-in function; it could have side effects",
                statement=s.index,
            )
