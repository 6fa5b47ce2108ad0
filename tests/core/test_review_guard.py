"""Guard bypass attempts run through a real GuardedConnection on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faker import Faker

from lgpd_tasks.audit import AuditStore
from lgpd_tasks.connection import GuardedConnection, connect
from lgpd_tasks.errors import ScopeViolation, StatementBlocked
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, parse_policy

WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)

POLICY = """\
version: 1
dialect: postgres
purposes:
  report: {{legal_basis: legitimate_interest, retention: 30d}}
scopes:
  extract:
    purpose: report
    read:
      {schema}.customers: [id, nome, cpf, cidade]
  load:
    purpose: report
    read:
      {schema}.customers: [id]
    write:
      {schema}.customers: [cidade]
masking:
  columns: {{cpf: hmac, nome: redact}}
"""


@pytest.fixture(autouse=True)
def _masking_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret-0123")


@pytest.fixture
def pg(pg_schema: str, postgres_dsn: str) -> str:
    """customers (with a column outside the scope) and secrets, as the administrator."""
    import psycopg

    fake = Faker("pt_BR")
    Faker.seed(11)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {pg_schema}.customers "
            "(id int PRIMARY KEY, nome text, cpf text UNIQUE, cidade text, status text)"
        )
        admin.execute(f"CREATE TABLE {pg_schema}.secrets (token text)")
        with admin.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {pg_schema}.customers VALUES (%s, %s, %s, %s, %s)",
                [(i, fake.name(), fake.cpf(), fake.city(), f"s{i % 2}") for i in range(1, 6)],
            )
    return pg_schema


def _open(dsn: str, schema: str, tmp_path: Path, scope: str = "extract") -> GuardedConnection:
    policy: Policy = parse_policy(POLICY.format(schema=schema), "policy.yaml")
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    return connect(dsn, policy=policy, scope=scope, identity=WHO, audit=audit)


@pytest.fixture
def conn(pg: str, postgres_dsn: str, tmp_path: Path) -> Iterator[GuardedConnection]:
    with _open(postgres_dsn, pg, tmp_path) as guarded:
        yield guarded


def _secrets(dsn: str, schema: str) -> list[str]:
    import psycopg

    with psycopg.connect(dsn) as admin:
        return [r[0] for r in admin.execute(f"SELECT token FROM {schema}.secrets")]


@pytest.mark.postgres
def test_schema_function_named_like_a_builtin_never_runs(
    conn: GuardedConnection, pg: str, postgres_dsn: str
) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE FUNCTION {pg}.format(text) RETURNS text LANGUAGE sql AS "
            f"$$ INSERT INTO {pg}.secrets VALUES ('written') RETURNING token $$"
        )
    with pytest.raises(StatementBlocked, match="unknown_function"):
        conn.execute(f"SELECT {pg}.format('x')")
    with pytest.raises(StatementBlocked, match="unknown_function"):
        conn.execute(f"SELECT * FROM {pg}.format('x') AS t")
    assert _secrets(postgres_dsn, pg) == []
    # the built-in itself, qualified by pg_catalog, is fine
    assert conn.execute("SELECT pg_catalog.format('%s-%s', 1, 2)").fetchall() == [("1-2",)]


@pytest.mark.postgres
def test_natural_join_reads_the_shared_columns(conn: GuardedConnection, pg: str) -> None:
    # the join compares status, which the scope does not grant: its rows depend on it
    with pytest.raises(ScopeViolation, match="status"):
        conn.execute(f"SELECT c1.id FROM {pg}.customers c1 NATURAL JOIN {pg}.customers c2")


@pytest.mark.postgres
def test_select_for_update_needs_a_write_grant(pg: str, postgres_dsn: str, tmp_path: Path) -> None:
    with (
        _open(postgres_dsn, pg, tmp_path) as reader,
        pytest.raises(ScopeViolation, match="write_scope"),
    ):
        reader.execute(f"SELECT id FROM {pg}.customers FOR UPDATE")
    with _open(postgres_dsn, pg, tmp_path, scope="load") as writer:
        rows = writer.execute(f"SELECT id FROM {pg}.customers WHERE id = 1 FOR UPDATE")
        assert rows.fetchall() == [(1,)]
