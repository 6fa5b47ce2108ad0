"""Ask approval for each trigger the scope lists in ``require_approval``.

- ``delete``, ``update``, ``insert``: a statement that does that anywhere (CTEs, MERGE
  branches, ``ON CONFLICT DO UPDATE``, ``COPY ... FROM STDIN`` as insert);
- ``export``: ``COPY ... TO STDOUT``, or a query that reads a table with no literal
  ``LIMIT`` (and is not a single-row aggregate): its whole result leaves the database;
- ``pii_read``: reading a column named in the policy's ``masking.columns`` or a
  well-known personal-data name (``cpf``, ``email``...), or every column (``*``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import ALL, Scope
from lgpd_tasks.sql.model import RuleContext, StatementAnalysis

RULE = "require_approval"


def approval_triggers(
    statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
) -> Iterator[Reason]:
    triggers = scope.require_approval
    if not triggers:
        return
    for s in statements:
        for kind in ("insert", "update", "delete"):
            if kind in triggers and kind in s.write_kinds:
                yield Reason(
                    f"{RULE}.{kind}",
                    "approve",
                    f"scope {scope.name} requires approval for {kind.upper()}",
                    table=min(s.tables_written) if s.tables_written else None,
                    statement=s.index,
                )
        if "export" in triggers and _exports(s):
            yield Reason(
                f"{RULE}.export",
                "approve",
                f"scope {scope.name} requires approval to export whole results",
                statement=s.index,
            )
        if "pii_read" in triggers:
            for table, columns in sorted(s.columns_read.items()):
                personal = sorted(
                    c for c in columns if c == ALL or c.lower() in context.pii_columns
                )
                if personal:
                    yield Reason(
                        f"{RULE}.pii_read",
                        "approve",
                        f"scope {scope.name} requires approval to read personal data "
                        f"({', '.join(personal)}) of {table}",
                        table=table,
                        column=personal[0],
                        statement=s.index,
                    )


def _exports(s: StatementAnalysis) -> bool:
    if s.kind == "copy":
        return s.copy_endpoint == "stdout"
    return s.kind == "select" and bool(s.tables_read) and s.row_bound is None
