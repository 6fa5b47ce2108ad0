"""PostgreSQL rolls back, without a word, the COMMIT of a transaction a failed statement
aborted: a task that caught the failure and went on must learn that its writes, recorded
"ok", did not persist, and the audit must say so."""

from __future__ import annotations

import sqlite3
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


def test_a_write_whose_returned_rows_are_not_all_read_still_counts(
    conn: GuardedConnection, cidades: str, postgres_dsn: str
) -> None:
    """``INSERT ... RETURNING`` read with one ``fetchone`` has written when it ran, even
    though its outcome is written only when the cursor closes."""
    conn.execute(f"INSERT INTO {cidades} VALUES (3, 'Olinda') RETURNING id").fetchone()
    with pytest.raises(StatementFailed, match="UniqueViolation"):
        conn.execute(f"INSERT INTO {cidades} VALUES (2, 'Natal')")
    with pytest.raises(StatementFailed, match="InFailedSqlTransaction"):
        conn.commit()
    assert _count(postgres_dsn, cidades) == 2


def test_a_commit_in_sql_is_checked_like_commit(
    conn: GuardedConnection, cidades: str, postgres_dsn: str, audit: AuditStore
) -> None:
    conn.execute(f"DELETE FROM {cidades} WHERE id = 1").close()
    with pytest.raises(StatementFailed):
        conn.execute(f"INSERT INTO {cidades} VALUES (2, 'Natal')")
    with pytest.raises(StatementFailed, match="InFailedSqlTransaction"):
        conn.execute("COMMIT")
    assert _count(postgres_dsn, cidades) == 2
    commit = audit.records(EntryFilter(kind="statement"))[-1]
    assert commit.status == "error"
    assert [e.details["event"] for e in audit.entries(EntryFilter(kind="transaction"))] == [
        "commit_of_aborted_transaction"
    ]


@pytest.mark.parametrize(
    "first",
    [
        pytest.param("ROLLBACK", id="a-rollback-in-sql-ends-the-writes"),
        pytest.param("UPDATE {t} SET nome = 'x' WHERE id = 99", id="an-update-of-no-row"),
        pytest.param("DELETE FROM {t} WHERE false", id="a-delete-of-no-row"),
        pytest.param("SELECT id FROM {t} FOR UPDATE", id="a-lock-is-no-write"),
    ],
)
def test_nothing_lost_means_no_alarm(
    conn: GuardedConnection, cidades: str, audit: AuditStore, first: str
) -> None:
    if first == "ROLLBACK":
        conn.execute(f"DELETE FROM {cidades} WHERE id = 1").close()
    conn.execute(first.format(t=cidades)).close()
    with pytest.raises(StatementFailed, match="DivisionByZero"):
        conn.execute(f"SELECT id / 0 FROM {cidades}").fetchall()
    conn.commit()
    assert audit.entries(EntryFilter(kind="transaction")) == []


def test_a_write_in_a_cte_whose_result_is_empty_still_counts(
    conn: GuardedConnection, cidades: str, postgres_dsn: str
) -> None:
    """The result's count (0) is not the count of rows the CTE deleted."""
    conn.execute(
        f"WITH d AS (DELETE FROM {cidades} WHERE id = 1 RETURNING id) SELECT id FROM d WHERE false"
    ).fetchall()
    with pytest.raises(StatementFailed, match="UniqueViolation"):
        conn.execute(f"INSERT INTO {cidades} VALUES (2, 'Natal')")
    with pytest.raises(StatementFailed, match="InFailedSqlTransaction"):
        conn.commit()
    assert _count(postgres_dsn, cidades) == 2


def test_sqlite_goes_on_after_a_failed_statement_and_commits_what_it_wrote(
    tmp_path: Path,
) -> None:
    """A failed statement does not abort a SQLite transaction: the writes before it (one
    that Python's sqlite3 commits at once, as a write starting with WITH, included) are
    committed, with no alarm."""
    db = tmp_path / "cidades.db"
    with sqlite3.connect(db) as raw:
        raw.execute("CREATE TABLE cidades (id int PRIMARY KEY, nome text)")
        raw.execute("INSERT INTO cidades VALUES (1, 'Recife'), (2, 'Natal')")
    policy = parse_policy(POLICY.format(schema="main").replace("postgres", "sqlite"), "p.yaml")
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    with connect(f"sqlite:///{db}", policy=policy, scope="rw", identity=WHO, audit=audit) as conn:
        conn.execute("WITH n AS (SELECT 3 AS id) INSERT INTO cidades SELECT id, 'Olinda' FROM n")
        conn.execute("DELETE FROM cidades WHERE id = 1").close()
        with pytest.raises(StatementFailed, match="IntegrityError"):
            conn.execute("INSERT INTO cidades VALUES (2, 'Natal')")
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT id FROM cidades ORDER BY id").fetchall() == [(2,), (3,)]
    assert audit.entries(EntryFilter(kind="transaction")) == []
