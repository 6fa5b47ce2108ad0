"""GuardedConnection and ``lgpd-tasks exec`` on a per-attempt PostgreSQL role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.cli import main
from lgpd_tasks.connection import connect
from lgpd_tasks.credentials import PostgresRoleBroker
from lgpd_tasks.errors import ScopeViolation, StatementFailed
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, parse_policy

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.postgres

WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)


def _policy_text(schema: str, prefix: str) -> str:
    return f"""\
version: 1
dialect: postgres
purposes:
  report:
    legal_basis: legitimate_interest
    retention: 30d
scopes:
  extract:
    purpose: report
    read:
      {schema}.customers: [id, cidade]
credentials:
  broker: postgres_role
  ttl: 10m
  role_prefix: {prefix}
masking:
  key_env: LGPD_MASKING_KEY
"""


@pytest.fixture
def env(
    postgres_dsn: str, pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Policy, Path, str]]:
    monkeypatch.setenv("LGPD_MASKING_KEY", "role-test-key-0123456789")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".customers (id int, nome text, cpf text, cidade text);'
            f"INSERT INTO \"{pg_schema}\".customers VALUES (1, 'Ana', '52998224725', 'Recife')"
        )
    prefix = f"lgpd_g{uuid.uuid4().hex[:8]}_"
    text = _policy_text(pg_schema, prefix)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    yield parse_policy(text), path, prefix
    with PostgresRoleBroker(postgres_dsn, role_prefix=prefix) as broker:
        broker.sweep(now=datetime.now(UTC) + timedelta(days=1))


def _roles(dsn: str, prefix: str) -> list[str]:
    with PostgresRoleBroker(dsn, role_prefix=prefix) as broker:
        return [r.name for r in broker.list_roles()]


def test_guarded_connection_logs_in_as_a_scoped_role_and_revokes_it_on_close(
    postgres_dsn: str, pg_schema: str, env: tuple[Policy, Path, str], tmp_path: Path
) -> None:
    policy, _, prefix = env
    audit = AuditStore.from_url(f"sqlite:///{tmp_path / 'audit.db'}")
    with connect(postgres_dsn, policy=policy, scope="extract", identity=WHO, audit=audit) as conn:
        assert conn.role is not None
        assert conn.role.startswith(prefix)
        assert _roles(postgres_dsn, prefix) == [conn.role]
        assert conn.execute("SELECT current_user").fetchall() == [(conn.role,)]
        assert conn.execute(f'SELECT cidade FROM "{pg_schema}".customers').fetchall() == [
            ("Recife",)
        ]
        role = conn.role
    assert _roles(postgres_dsn, prefix) == []
    intents = [
        e
        for e in audit.entries(EntryFilter(kind="statement"))
        if e.details.get("event") == "intent"
    ]
    assert intents
    assert all(e.details["role"] == role for e in intents)


def test_database_refuses_what_the_guard_would_have_blocked(
    postgres_dsn: str, pg_schema: str, env: tuple[Policy, Path, str], tmp_path: Path
) -> None:
    policy, _, _ = env
    audit = AuditStore.from_url(f"sqlite:///{tmp_path / 'audit.db'}")
    with connect(postgres_dsn, policy=policy, scope="extract", identity=WHO, audit=audit) as conn:
        with pytest.raises(ScopeViolation):
            conn.execute(f'SELECT cpf FROM "{pg_schema}".customers')
        conn._guard_enabled = False  # the test-only seam: PostgreSQL is now the only check
        for statement in (
            f'SELECT cpf FROM "{pg_schema}".customers',
            f"UPDATE \"{pg_schema}\".customers SET cidade = 'X'",
            f'DROP TABLE "{pg_schema}".customers',
            "SET ROLE postgres",
        ):
            with pytest.raises(StatementFailed) as info:
                conn.execute(statement)
            assert info.value.sqlstate == "42501"  # insufficient_privilege
            conn.rollback()


def test_select_star_over_a_partly_granted_table_is_refused_by_the_guard(
    postgres_dsn: str, pg_schema: str, env: tuple[Policy, Path, str], tmp_path: Path
) -> None:
    # the role may not see the ungranted columns in information_schema; the guard must
    # still expand '*' to every column and refuse it, not leave it to PostgreSQL
    policy, _, _ = env
    audit = AuditStore.from_url(f"sqlite:///{tmp_path / 'audit.db'}")
    with connect(postgres_dsn, policy=policy, scope="extract", identity=WHO, audit=audit) as conn:
        refused = pytest.raises(ScopeViolation, match="read_scope")
        with refused:
            conn.execute(f'SELECT * FROM "{pg_schema}".customers')


def test_connect_revokes_the_role_when_the_login_fails(
    env: tuple[Policy, Path, str], postgres_dsn: str, tmp_path: Path
) -> None:
    policy, _, prefix = env
    audit = AuditStore.from_url(f"sqlite:///{tmp_path / 'audit.db'}")
    broker = PostgresRoleBroker(
        postgres_dsn, role_prefix=prefix, target_url=postgres_dsn.replace(":5432", ":1")
    )
    with pytest.raises(StatementFailed, match="cannot connect"):
        connect(
            postgres_dsn, policy=policy, scope="extract", identity=WHO, audit=audit, broker=broker
        )
    assert _roles(postgres_dsn, prefix) == []
    broker.close()


def test_exec_runs_on_a_scoped_role_and_leaves_none_behind(
    postgres_dsn: str,
    pg_schema: str,
    env: tuple[Policy, Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, path, prefix = env
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    code = main(
        [
            "exec",
            "--policy",
            str(path),
            "--scope",
            "extract",
            "--db",
            postgres_dsn,
            "--audit",
            audit_url,
            "--format",
            "json",
            "--sql",
            f'SELECT cidade, current_user AS who FROM "{pg_schema}".customers',
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Recife" in out
    assert prefix in out
    assert _roles(postgres_dsn, prefix) == []
    (record,) = AuditStore.from_url(audit_url).records(EntryFilter(kind="statement"))
    assert record.entry.details["role"].startswith(prefix)
