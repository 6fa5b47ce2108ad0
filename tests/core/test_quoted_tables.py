"""A value written as a double-quoted table name never reaches block reasons or the audit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.connection import connect
from lgpd_tasks.errors import StatementBlocked
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import parse_policy

POLICY = """\
version: 1
dialect: {dialect}
purposes:
  report: {{legal_basis: legitimate_interest, retention: 180d}}
scopes:
  extract:
    purpose: report
    read:
      customers: [id, cidade]
"""


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT * FROM "Maria Souza"',
        'SELECT id FROM main."Maria Souza"',
        'SELECT "Maria Souza".id FROM customers',
        'UPDATE "Maria Souza" SET id = 1',
    ],
)
def test_a_quoted_table_name_that_is_no_granted_table_is_hidden(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER, cidade TEXT)")
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    who = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1")
    policy = parse_policy(POLICY.format(dialect="sqlite"))
    with connect(
        f"sqlite:///{path}", policy=policy, scope="extract", identity=who, audit=audit
    ) as conn:
        with pytest.raises(StatementBlocked) as caught:
            conn.execute(sql)
        assert "maria" not in str(caught.value).lower()
        assert all("maria" not in r.message.lower() for r in caught.value.reasons)
        # a granted table in double quotes keeps its name
        assert conn.execute('SELECT id FROM "customers"').fetchall() == []
        assert '"customers"' in conn.check('SELECT id FROM "customers"').normalized
    records = audit.records(EntryFilter(kind="statement"))
    assert records
    assert all("maria" not in str(r.to_dict()).lower() for r in records)
