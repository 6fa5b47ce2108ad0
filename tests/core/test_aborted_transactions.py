"""PostgreSQL rolls back, without a word, the COMMIT of a transaction a failed statement
aborted: a task that caught the failure and went on must learn that its writes, recorded
"ok", did not persist, and the audit must say so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.connection import GuardedConnection, connect
from lgpd_tasks.errors import StatementFailed
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import parse_policy

pytestmark = pytest.mark.postgres

WHO = TaskIdentity("airflow", "contractor", "purge", run_id="manual__1", attempt=1)

POLICY = """\
version: 1
dialect: postgres
purposes:
  report: {{legal_basis: legitimate_interest, retention: 30d}}
scopes:
  rw:
    purpose: report
    read:
      {schema}.cidades: "*"
    write:
      {schema}.cidades: "*"
"""


@pytest.fixture
def cidades(pg_schema: str, postgres_dsn: str) -> str:
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE {pg_schema}.cidades (id int PRIMARY KEY, nome text)")
        admin.execute(f"INSERT INTO {pg_schema}.cidades VALUES (1, 'Recife'), (2, 'Natal')")
    return f"{pg_schema}.cidades"


@pytest.fixture
def audit(tmp_path: Path) -> AuditStore:
    return AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")


@pytest.fixture
def conn(cidades: str, postgres_dsn: str, audit: AuditStore) -> Iterator[GuardedConnection]:
    policy = parse_policy(POLICY.format(schema=cidades.split(".")[0]), "policy.yaml")
    with connect(postgres_dsn, policy=policy, scope="rw", identity=WHO, audit=audit) as c:
        yield c


def _count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_a_write_before_a_caught_failure_is_not_committed_and_the_commit_says_so(
    conn: GuardedConnection, cidades: str, postgres_dsn: str, audit: AuditStore
) -> None:
    conn.execute(f"DELETE FROM {cidades} WHERE id = 1").close()
    with pytest.raises(StatementFailed, match="UniqueViolation"):
        conn.execute(f"INSERT INTO {cidades} VALUES (2, 'Natal')")
    # the task goes on as if the failure did not matter, and commits
    with pytest.raises(StatementFailed) as info:
        conn.commit()
    assert str(info.value).startswith(
        "database refused the commit (InFailedSqlTransaction): a statement failed earlier"
    )
    assert info.value.sqlstate == "25P02"
    assert _count(postgres_dsn, cidades) == 2  # the DELETE did not persist
    delete, insert = audit.records(EntryFilter(kind="statement"))
    assert delete.status == "ok"  # it ran; the transaction record says it did not persist
    assert insert.status == "error"
    (rolled_back,) = audit.entries(EntryFilter(kind="transaction"))
    assert rolled_back.decision == "rolled_back"
    assert rolled_back.details["event"] == "commit_of_aborted_transaction"
    assert audit.verify().ok


def test_a_failed_read_alone_commits_quietly_and_the_next_transaction_works(
    conn: GuardedConnection, cidades: str, postgres_dsn: str, audit: AuditStore
) -> None:
    """Nothing was changed: the rollback loses nothing, so the commit does not fail."""
    with pytest.raises(StatementFailed, match="DivisionByZero"):
        conn.execute(f"SELECT id / 0 FROM {cidades}").fetchall()
    conn.commit()
    conn.execute(f"DELETE FROM {cidades} WHERE id = 1").close()
    conn.commit()
    assert _count(postgres_dsn, cidades) == 1
    assert audit.entries(EntryFilter(kind="transaction")) == []


def test_a_rollback_clears_the_writes_of_the_aborted_transaction(
    conn: GuardedConnection, cidades: str, postgres_dsn: str, audit: AuditStore
) -> None:
    conn.execute(f"DELETE FROM {cidades} WHERE id = 1").close()
    with pytest.raises(StatementFailed):
        conn.execute(f"INSERT INTO {cidades} VALUES (2, 'Natal')")
    conn.rollback()
    conn.execute(f"DELETE FROM {cidades} WHERE id = 2").close()
    conn.commit()
    assert _count(postgres_dsn, cidades) == 1
    assert audit.entries(EntryFilter(kind="transaction")) == []
