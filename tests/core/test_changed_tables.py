"""A table another session changes while a guarded connection is open: ``SELECT *`` is
checked against the columns the table has now, not those the connection read earlier, and
a result wider than what was checked (the table changed between the check and the run) is
checked again before any row is handed out."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from faker import Faker

from lgpd_tasks.approvals import ApprovalStore, Approver
from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.connection import GuardedConnection, connect
from lgpd_tasks.errors import ApprovalRequired, LgpdError, ScopeViolation, StatementBlocked
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import parse_policy

pytestmark = pytest.mark.usefixtures("masking_key")

WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)

POLICY = """\
version: 1
dialect: {dialect}
purposes:
  report: {{legal_basis: legitimate_interest, retention: 30d}}
scopes:
  cities:
    purpose: report
    read:
      {table}: [id, cidade]
  everything:
    purpose: report
    read:
      {table}: "*"
masking:
  columns: {{cpf: hmac}}
"""


@pytest.fixture
def cpf() -> str:
    Faker.seed(9)
    return str(Faker("pt_BR").cpf())


@pytest.fixture
def source(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(tmp_path / "source.db")
    db.execute("CREATE TABLE t (id INTEGER, cidade TEXT)")
    db.execute("INSERT INTO t VALUES (1, 'Recife')")
    db.commit()
    yield db
    db.close()


def _sqlite(tmp_path: Path, audit: AuditStore, scope: str, **kw: bool) -> GuardedConnection:
    policy = parse_policy(POLICY.format(dialect="sqlite", table="t"), "policy.yaml")
    url = f"sqlite:///{tmp_path / 'source.db'}"
    return connect(url, policy=policy, scope=scope, identity=WHO, audit=audit, **kw)


def _add_cpf(db: sqlite3.Connection, cpf: str) -> None:
    db.execute("ALTER TABLE t ADD COLUMN cpf TEXT")
    db.execute("UPDATE t SET cpf = ?", (cpf,))
    db.commit()


def _add_cpf_after_the_check(
    db: sqlite3.Connection, cpf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session adds ``cpf`` just after the guard read the table's columns (inside
    the statement's transaction, as far as the guarded connection can tell)."""
    monkeypatch.setattr(GuardedConnection, "_in_transaction", lambda self: True)
    _add_cpf(db, cpf)


@pytest.mark.parametrize("mask_results", [True, False])
def test_a_column_added_between_two_statements_is_seen(
    tmp_path: Path, audit: AuditStore, source: sqlite3.Connection, cpf: str, mask_results: bool
) -> None:
    with _sqlite(tmp_path, audit, "cities", mask_results=mask_results) as conn:
        assert conn.execute("SELECT * FROM t").fetchall() == [(1, "Recife")]
        _add_cpf(source, cpf)
        with pytest.raises(ScopeViolation, match=r"column main\.t\.cpf is not readable"):
            conn.execute("SELECT * FROM t")
    assert cpf not in str([r.to_dict() for r in audit.records()])


def test_a_result_wider_than_what_was_checked_is_checked_again(
    tmp_path: Path,
    audit: AuditStore,
    source: sqlite3.Connection,
    cpf: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The table changes between the check (columns read from the catalogue) and the run:
    the statement ran, its rows are not handed out, and its outcome says why."""
    with _sqlite(tmp_path, audit, "cities", mask_results=False) as conn:
        assert conn.execute("SELECT * FROM t").fetchall() == [(1, "Recife")]
        _add_cpf_after_the_check(source, cpf, monkeypatch)
        cur = conn.cursor()
        with pytest.raises(ScopeViolation, match=r"column main\.t\.cpf is not readable"):
            cur.execute("SELECT * FROM t")
        with pytest.raises(LgpdError, match="the result was stopped"):
            cur.fetchall()
    second = audit.records(EntryFilter(kind="statement"))[1]
    assert second.status == "error"
    assert second.outcome is not None
    assert second.outcome.details["error_class"] == "ScopeViolation"


def test_a_wider_result_the_scope_allows_is_masked_column_by_column(
    tmp_path: Path,
    audit: AuditStore,
    source: sqlite3.Connection,
    cpf: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checked again, the new column is masked under its own rule (``cpf: hmac``), and the
    others are left as they are, not masked by the most protective rule of them all."""
    with _sqlite(tmp_path, audit, "everything") as conn:
        conn.execute("SELECT * FROM t").fetchall()
        _add_cpf_after_the_check(source, cpf, monkeypatch)
        [(ident, cidade, token)] = conn.execute("SELECT * FROM t").fetchall()
    assert (ident, cidade) == (1, "Recife")
    assert cpf not in token
    assert cpf not in str([r.to_dict() for r in audit.records()])


@pytest.mark.postgres
def test_a_column_added_after_a_commit_is_seen_on_postgres(
    pg_schema: str, postgres_dsn: str, audit: AuditStore, cpf: str
) -> None:
    table = f"{pg_schema}.t"
    with psycopg.connect(postgres_dsn, autocommit=True) as other:
        other.execute(f"CREATE TABLE {table} (id int, cidade text)")
        other.execute(f"INSERT INTO {table} VALUES (1, 'Recife')")
    policy = parse_policy(POLICY.format(dialect="postgres", table=table), "policy.yaml")
    with connect(postgres_dsn, policy=policy, scope="cities", identity=WHO, audit=audit) as conn:
        assert conn.execute(f"SELECT * FROM {table}").fetchall() == [(1, "Recife")]
        conn.commit()
        with psycopg.connect(postgres_dsn, autocommit=True) as other:
            other.execute(f"ALTER TABLE {table} ADD COLUMN cpf text")
            other.execute(f"UPDATE {table} SET cpf = %s", (cpf,))
        with pytest.raises(ScopeViolation, match="cpf is not readable"):
            conn.execute(f"SELECT * FROM {table}")


def test_a_new_reason_for_approval_is_not_covered_by_the_approval_given(
    tmp_path: Path,
    audit: AuditStore,
    source: sqlite3.Connection,
    cpf: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Approved to export ``id, cidade``; by the run the table also has ``cpf``, which reads
    personal data: nobody approved that, so the rows are not handed out."""
    text = POLICY.format(dialect="sqlite", table="t").replace(
        '      t: "*"\n', '      t: "*"\n    require_approval: [export, pii_read]\n'
    )
    policy = parse_policy(text, "policy.yaml")
    url = f"sqlite:///{tmp_path / 'source.db'}"
    approvals = ApprovalStore(audit)
    with (
        connect(url, policy=policy, scope="everything", identity=WHO, audit=audit) as conn,
        pytest.raises(ApprovalRequired) as asked,
    ):
        conn.execute("SELECT * FROM t")
    approvals.approve(asked.value.request_id, Approver("dpo"), "the cities")
    with connect(url, policy=policy, scope="everything", identity=WHO, audit=audit) as conn:
        conn.check("SELECT * FROM t")
        _add_cpf_after_the_check(source, cpf, monkeypatch)
        with pytest.raises(StatementBlocked, match="they need an approval it was not given"):
            conn.execute("SELECT * FROM t")


def test_the_outcome_of_a_result_checked_again_names_the_columns_it_had(
    tmp_path: Path,
    audit: AuditStore,
    source: sqlite3.Connection,
    cpf: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _sqlite(tmp_path, audit, "everything") as conn:
        conn.execute("SELECT * FROM t").fetchall()
        _add_cpf_after_the_check(source, cpf, monkeypatch)
        conn.execute("SELECT * FROM t").fetchall()
    first, second = audit.records(EntryFilter(kind="statement"))
    assert first.outcome is not None
    assert "columns_read" not in first.outcome.details
    assert second.outcome is not None
    assert second.outcome.details["columns_read"] == {"main.t": ["cidade", "cpf", "id"]}


@pytest.mark.postgres
def test_a_snapshot_that_cannot_explain_the_result_refuses_it(
    pg_schema: str, postgres_dsn: str, audit: AuditStore, cpf: str
) -> None:
    """A REPEATABLE READ transaction reads the catalogue as of its snapshot, while the
    query returns the table as it is now: a column the catalogue cannot explain is not
    handed out, and a new transaction sees it for what it is."""
    table = f"{pg_schema}.t"
    with psycopg.connect(postgres_dsn, autocommit=True) as other:
        other.execute(f"CREATE TABLE {table} (id int, cidade text)")
        other.execute(f"INSERT INTO {table} VALUES (1, 'Recife')")
        other.execute(f"CREATE TABLE {pg_schema}.a (id int)")
    text = POLICY.format(dialect="postgres", table=table).replace(
        f"      {table}: [id, cidade]\n",
        f"      {table}: [id, cidade]\n      {pg_schema}.a: [id]\n",
    )
    policy = parse_policy(text, "policy.yaml")
    with connect(postgres_dsn, policy=policy, scope="cities", identity=WHO, audit=audit) as conn:
        conn._raw.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.execute(f"SELECT id FROM {pg_schema}.a").fetchall()  # the snapshot is taken
        conn.check(f"SELECT * FROM {table}")
        with psycopg.connect(postgres_dsn, autocommit=True) as other:
            other.execute(f"ALTER TABLE {table} ADD COLUMN cpf text")
            other.execute(f"UPDATE {table} SET cpf = %s", (cpf,))
        cur = conn.cursor()
        with pytest.raises(StatementBlocked, match="snapshot; run it again in a new transaction"):
            cur.execute(f"SELECT * FROM {table}")
        with pytest.raises(LgpdError, match="the result was stopped"):
            cur.fetchall()
        conn.rollback()
        with pytest.raises(ScopeViolation, match="cpf is not readable"):
            conn.execute(f"SELECT * FROM {table}")
    assert cpf not in str([r.to_dict() for r in audit.records()])
