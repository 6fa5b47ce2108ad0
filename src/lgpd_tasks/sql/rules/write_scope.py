"""Block writing a table or column the scope does not grant; DELETE and MERGE need "*"."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import ALL, Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis

RULE = "write_scope"


def write_scope(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    for s in statements:
        for table in sorted(s.tables_written):
            granted = scope.writable_columns(table)
            if granted is None:
                yield Reason(
                    RULE,
                    "block",
                    f"table {table} is not writable in scope {scope.name}",
                    table=table,
                    statement=s.index,
                )
                continue
            if ALL in granted:
                continue
            for column in sorted(s.columns_written.get(table, ())):
                if column == ALL:
                    yield Reason(
                        RULE,
                        "block",
                        f"whole rows of {table} are written (DELETE, MERGE or INSERT without "
                        f'a column list); scope {scope.name} must grant "*"',
                        table=table,
                        column=ALL,
                        statement=s.index,
                    )
                elif column not in granted:
                    yield Reason(
                        RULE,
                        "block",
                        f"column {table}.{column} is not writable in scope {scope.name}",
                        table=table,
                        column=column,
                        statement=s.index,
                    )
