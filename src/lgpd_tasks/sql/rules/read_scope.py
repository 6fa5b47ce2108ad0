"""Block reading a table or column the scope does not grant (WHERE, SET, RETURNING included)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import ALL, Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis

RULE = "read_scope"


def read_scope(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    for s in statements:
        for table in sorted(s.tables_read):
            granted = scope.readable_columns(table)
            if granted is None:
                yield Reason(
                    RULE,
                    "block",
                    f"table {table} is not readable in scope {scope.name}",
                    table=table,
                    statement=s.index,
                )
                continue
            if ALL in granted:
                continue
            for column in sorted(s.columns_read.get(table, ())):
                if column == ALL:
                    yield Reason(
                        RULE,
                        "block",
                        f"every column of {table} may be read (a * or whole-row reference "
                        "that cannot be expanded, or a column renamed by position, without "
                        f"the table's columns from the catalogue); scope {scope.name} grants "
                        "only some",
                        table=table,
                        column=ALL,
                        statement=s.index,
                    )
                elif column not in granted:
                    yield Reason(
                        RULE,
                        "block",
                        f"column {table}.{column} is not readable in scope {scope.name}",
                        table=table,
                        column=column,
                        statement=s.index,
                    )
        for name in sorted(s.unresolved_columns):
            yield Reason(
                RULE,
                "block",
                f"reference {name} cannot be attributed to a table",
                column=name,
                statement=s.index,
            )
