"""Per-attempt PostgreSQL roles: PostgreSQL itself refuses what the scope does not grant."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lgpd_tasks.credentials import (
    PostgresRoleBroker,
    RoleMarker,
    ScopedCredential,
    StaticBroker,
    broker_from_policy,
    libpq_url,
)
from lgpd_tasks.errors import CredentialError, PolicyError
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.postgres

DENIED = (psycopg.errors.InsufficientPrivilege,)


def _policy(schema: str, **credentials: Any) -> Policy:
    return Policy.from_dict(
        {
            "version": 1,
            "dialect": "postgres",
            "purposes": {"report": {"legal_basis": "legitimate_interest", "retention": "30d"}},
            "scopes": {
                "report.extract": {
                    "purpose": "report",
                    "read": {f"{schema}.customers": ["id", "nome", "cidade"]},
                },
                "report.load": {
                    "purpose": "report",
                    "read": {f"{schema}.summary": ["cidade"]},
                    "write": {f"{schema}.summary": ["cidade", "clientes"]},
                },
                "report.purge": {
                    "purpose": "report",
                    "read": {f"{schema}.purge": ["id"]},
                    "write": {f"{schema}.purge": "*"},
                },
                "report.signup": {
                    "purpose": "report",
                    "write": {f"{schema}.customers": ["nome", "cidade"]},
                },
                "report.missing": {
                    "purpose": "report",
                    "read": {f"{schema}.nowhere": ["id"]},
                },
            },
            "credentials": credentials,
        }
    )


@dataclass
class Setup:
    dsn: str
    schema: str
    policy: Policy
    broker: PostgresRoleBroker
    prefix: str

    def identity(self, task: str = "extract", attempt: int = 1) -> TaskIdentity:
        return TaskIdentity("airflow", "contractor", task, run_id="manual__1", attempt=attempt)

    def issue(self, scope: str, **kwargs: Any) -> ScopedCredential:
        return self.broker.issue(self.identity(), self.policy.scope(scope), **kwargs)

    def admin(self) -> Any:
        return psycopg.connect(self.dsn, autocommit=True)


@pytest.fixture
def pg(postgres_dsn: str, pg_schema: str) -> Iterator[Setup]:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f"""
            CREATE TABLE "{pg_schema}".customers
                (id serial PRIMARY KEY, nome text, cpf text, email text, cidade text);
            INSERT INTO "{pg_schema}".customers (nome, cpf, email, cidade)
                VALUES ('Ana Souza', '123.456.789-09', 'ana@example.com.br', 'Recife');
            CREATE TABLE "{pg_schema}".secrets (id int, note text);
            CREATE TABLE "{pg_schema}".summary (cidade text, clientes int, receita numeric);
            CREATE TABLE "{pg_schema}".purge (id int, created_at date);
            INSERT INTO "{pg_schema}".purge VALUES (1, '2020-01-01'), (2, '2024-01-01');
            """
        )
    prefix = f"lgpd_t{uuid.uuid4().hex[:8]}_"
    broker = PostgresRoleBroker(postgres_dsn, role_prefix=prefix)
    setup = Setup(postgres_dsn, pg_schema, _policy(pg_schema), broker, prefix)
    try:
        yield setup
    finally:
        broker.sweep(now=datetime.now(UTC) + timedelta(days=365))
        leftover = broker.list_roles()
        broker.close()
        with setup.admin() as conn:
            for role in leftover:  # unmarked roles a test made by hand
                conn.execute(f'DROP OWNED BY "{role.name}"; DROP ROLE "{role.name}"')


def _run(cred: ScopedCredential, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(cred.url), autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def test_scoped_role_reads_granted_columns_and_nothing_else(pg: Setup) -> None:
    cred = pg.issue("report.extract")
    s = pg.schema
    assert _run(cred, f'SELECT id, nome, cidade FROM "{s}".customers') == [
        (1, "Ana Souza", "Recife")
    ]
    with pytest.raises(DENIED, match="permission denied"):
        _run(cred, f'SELECT cpf FROM "{s}".customers')
    with pytest.raises(DENIED, match="permission denied"):
        _run(cred, f'SELECT * FROM "{s}".customers')
    with pytest.raises(DENIED, match="permission denied"):
        _run(cred, f"SELECT id FROM \"{s}\".customers WHERE email LIKE '%%'")
    with pytest.raises(DENIED, match="permission denied"):
        _run(cred, f'SELECT note FROM "{s}".secrets')


def test_scoped_role_writes_granted_columns_only(pg: Setup) -> None:
    cred = pg.issue("report.load")
    s = pg.schema
    _run(cred, f"INSERT INTO \"{s}\".summary (cidade, clientes) VALUES ('Recife', 1)")
    _run(cred, f"UPDATE \"{s}\".summary SET clientes = 2 WHERE cidade = 'Recife'")
    refused = [
        f"INSERT INTO \"{s}\".summary (cidade, receita) VALUES ('Recife', 10)",
        f'UPDATE "{s}".summary SET receita = 10',
        f"DELETE FROM \"{s}\".summary WHERE cidade = 'Recife'",
        f"INSERT INTO \"{s}\".customers (nome) VALUES ('X')",
        f"INSERT INTO \"{s}\".secrets VALUES (1, 'x')",
        f'SELECT receita FROM "{s}".summary',
    ]
    for statement in refused:
        with pytest.raises(DENIED, match="permission denied"):
            _run(cred, statement)
    with pg.admin() as conn:
        assert conn.execute(f'SELECT cidade, clientes, receita FROM "{s}".summary').fetchall() == [
            ("Recife", 2, None)
        ]


def test_delete_is_granted_only_with_a_star_write_grant(pg: Setup) -> None:
    cred = pg.issue("report.purge")
    _run(cred, f'DELETE FROM "{pg.schema}".purge WHERE id = 1')
    with pg.admin() as conn:
        assert conn.execute(f'SELECT id FROM "{pg.schema}".purge').fetchall() == [(2,)]


def test_insert_with_column_grant_can_use_the_serial_default(pg: Setup) -> None:
    cred = pg.issue("report.signup")
    _run(cred, f"INSERT INTO \"{pg.schema}\".customers (nome, cidade) VALUES ('Bia', 'Natal')")
    with pytest.raises(DENIED):
        _run(cred, f"INSERT INTO \"{pg.schema}\".customers (id, nome) VALUES (99, 'Caio')")


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param('CREATE TABLE "{s}".stolen (x text)', id="create-table"),
        pytest.param("CREATE SCHEMA stolen_{s}", id="create-schema"),
        pytest.param('DROP TABLE "{s}".customers', id="drop-table"),
        pytest.param('ALTER TABLE "{s}".customers ADD COLUMN x int', id="alter-table"),
        pytest.param('TRUNCATE "{s}".customers', id="truncate"),
        pytest.param('CREATE INDEX ON "{s}".customers (nome)', id="create-index"),
        pytest.param('GRANT SELECT ON "{s}".secrets TO PUBLIC', id="grant"),
        pytest.param("CREATE TABLE public.stolen_{s} (x text)", id="create-in-public"),
        pytest.param("SELECT pg_read_file('/etc/passwd')", id="read-file"),
    ],
)
def test_ddl_and_privileged_functions_are_refused(pg: Setup, statement: str) -> None:
    cred = pg.issue("report.extract")
    with pytest.raises((*DENIED, psycopg.errors.WrongObjectType)):
        _run(cred, statement.format(s=pg.schema))


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("SET ROLE lgpd_task_owner", id="owner"),
        pytest.param("SET ROLE postgres", id="admin"),
        pytest.param("SET SESSION AUTHORIZATION postgres", id="session-authorization"),
        pytest.param("SELECT set_config('role', 'postgres', false)", id="set-config"),
    ],
)
def test_set_role_to_owner_or_admin_is_refused(pg: Setup, statement: str) -> None:
    cred = pg.issue("report.extract")
    with pytest.raises(DENIED, match="permission denied"):
        _run(cred, statement)


def test_revoke_terminates_open_session_and_role_cannot_connect(pg: Setup) -> None:
    cred = pg.issue("report.extract")
    open_conn = psycopg.connect(libpq_url(cred.url), autocommit=True)
    try:
        assert open_conn.execute("SELECT current_user").fetchone() == (cred.role,)
        pg.broker.revoke(cred)
        with pytest.raises(psycopg.OperationalError):
            open_conn.execute("SELECT 1")
    finally:
        open_conn.close()
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(libpq_url(cred.url))
    with pg.admin() as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (cred.role,)).fetchone()
            is None
        )
    assert pg.broker.revoke_role(cred.role or "") is False  # revoking twice is harmless


def test_revoke_unlinks_the_large_objects_the_role_made(pg: Setup) -> None:
    cred = pg.issue("report.extract")
    # large objects are one thing any role may create; reassigned, they would keep their grants
    ((oid,),) = _run(cred, "SELECT lo_create(0)")
    pg.broker.revoke(cred)
    with pg.admin() as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_largeobject_metadata WHERE oid = %s", (oid,)).fetchall()
            == []
        )


def test_issued_role_is_marked_limited_and_expires(pg: Setup) -> None:
    cred = pg.issue("report.extract", ttl=timedelta(minutes=5))
    assert cred.role is not None
    assert cred.role.startswith(pg.prefix)
    assert len(cred.role.encode()) <= 63
    assert pg.identity().attempt_hash[:20] in cred.role
    with pg.admin() as conn:
        row = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolinherit, rolcreaterole, rolconnlimit, rolvaliduntil,"
            " shobj_description(oid, 'pg_authid'),"
            " (SELECT rolpassword FROM pg_authid WHERE rolname = r.rolname)"
            " FROM pg_roles r WHERE rolname = %s",
            (cred.role,),
        ).fetchone()
    login, superuser, inherit, createrole, connlimit, valid_until, comment, secret = row
    assert (login, superuser, inherit, createrole, connlimit) == (True, False, False, False, 2)
    assert valid_until == cred.expires_at
    assert timedelta(minutes=4) < cred.expires_at - datetime.now(UTC) <= timedelta(minutes=5)
    marker = RoleMarker.parse(comment)
    assert marker is not None
    assert (marker.scope, marker.attempt, marker.database) == (
        "report.extract",
        pg.identity().attempt_hash,
        "test",
    )
    password = psycopg.conninfo.conninfo_to_dict(libpq_url(cred.url))["password"]
    assert secret.startswith("SCRAM-SHA-256$")
    assert password not in secret
    assert password not in repr(cred)
    assert password not in str(cred)
    assert password not in str(cred.to_dict())


def test_connection_limit_is_enforced(postgres_dsn: str, pg: Setup) -> None:
    broker = PostgresRoleBroker(postgres_dsn, role_prefix=pg.prefix, connection_limit=1)
    with broker:
        cred = broker.issue(pg.identity(), pg.policy.scope("report.extract"))
        with (
            psycopg.connect(libpq_url(cred.url)),
            pytest.raises(psycopg.OperationalError, match="too many connections"),
        ):
            psycopg.connect(libpq_url(cred.url))
        broker.revoke(cred)


def test_failed_grant_leaves_no_role_behind(pg: Setup) -> None:
    with pytest.raises(CredentialError, match=r"report\.missing.*nowhere does not exist"):
        pg.issue("report.missing")
    assert pg.broker.list_roles() == []


def test_two_connections_of_one_attempt_get_distinct_roles(pg: Setup) -> None:
    first, second = pg.issue("report.extract"), pg.issue("report.extract")
    assert first.role != second.role
    pg.broker.revoke(first)
    assert _run(second, "SELECT current_user") == [(second.role,)]


def test_sweep_drops_expired_and_interrupted_roles_only(pg: Setup) -> None:
    expired = pg.issue("report.extract", ttl=timedelta(minutes=1))
    live = pg.issue("report.extract", ttl=timedelta(hours=2))
    interrupted = pg.issue("report.extract", ttl=timedelta(hours=2))
    stranger = f"{pg.prefix}handmade"
    with pg.admin() as conn:
        conn.execute(f'ALTER ROLE "{interrupted.role}" NOLOGIN')
        conn.execute(f'CREATE ROLE "{stranger}" NOLOGIN')
    session = psycopg.connect(libpq_url(expired.url), autocommit=True)
    try:
        report = pg.broker.sweep(now=datetime.now(UTC) + timedelta(minutes=10))
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    finally:
        session.close()
    dropped = {r.name: r.reason for r in report.dropped}
    assert dropped == {expired.role: "expired", interrupted.role: "revoke interrupted"}
    assert [r.sessions_terminated for r in report.dropped if r.name == expired.role] == [1]
    assert report.kept == [live.role]
    assert [name for name, _ in report.skipped] == [stranger]
    assert {r.name for r in pg.broker.list_roles()} == {live.role, stranger}
    with pytest.raises(CredentialError, match="not made by lgpd-tasks"):
        pg.broker.revoke_role(stranger)


def test_revoke_refuses_roles_outside_the_prefix(pg: Setup) -> None:
    with pytest.raises(CredentialError, match="does not start with"):
        pg.broker.revoke_role("postgres")


def test_admin_password_never_appears_in_errors_or_repr() -> None:
    broker = PostgresRoleBroker("postgresql://postgres:topsecret@127.0.0.1:1/test")
    assert "topsecret" not in repr(broker)
    policy = _policy("crm")
    with pytest.raises(CredentialError) as info:
        broker.issue(TaskIdentity("cli", "cli", "maria"), policy.scope("report.extract"))
    assert "topsecret" not in str(info.value)
    assert "cannot connect" in str(info.value)


@pytest.mark.slow
def test_thousand_attempts_leave_no_orphan_role(pg: Setup) -> None:
    scope = pg.policy.scope("report.load")
    for attempt in range(1, 1001):
        cred = pg.broker.issue(pg.identity("load", attempt), scope)
        pg.broker.revoke(cred)
    assert pg.broker.list_roles() == []
    with pg.admin() as conn:
        grants = conn.execute(
            "SELECT count(*) FROM information_schema.column_privileges WHERE grantee LIKE %s",
            (pg.prefix + "%",),
        ).fetchone()
    assert grants == (0,)


# -- choosing a broker from the policy -------------------------------------------------


def test_policy_without_credentials_section_uses_the_static_broker() -> None:
    broker = broker_from_policy(_policy("crm"), "postgresql://postgres@127.0.0.1/test")
    assert isinstance(broker, StaticBroker)


def test_policy_postgres_role_picks_the_role_broker() -> None:
    policy = _policy("crm", broker="postgres_role", ttl="5m", connection_limit=3)
    broker = broker_from_policy(policy, "postgresql+psycopg://postgres@127.0.0.1/test")
    assert isinstance(broker, PostgresRoleBroker)
    assert (broker.ttl, broker.connection_limit) == (timedelta(minutes=5), 3)


def test_policy_postgres_role_on_sqlite_is_refused() -> None:
    policy = _policy("crm", broker="postgres_role")
    with pytest.raises(CredentialError, match="not PostgreSQL"):
        broker_from_policy(policy, "sqlite:///x.db")


def test_admin_url_comes_from_the_named_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = _policy("crm", broker="postgres_role", admin_url_env="LGPD_TEST_ADMIN_URL")
    monkeypatch.delenv("LGPD_TEST_ADMIN_URL", raising=False)
    with pytest.raises(CredentialError, match="LGPD_TEST_ADMIN_URL"):
        broker_from_policy(policy, "postgresql://app@127.0.0.1/test")
    monkeypatch.setenv("LGPD_TEST_ADMIN_URL", "postgresql://postgres:pw@127.0.0.1/other")
    with pytest.raises(CredentialError, match="same database"):
        broker_from_policy(policy, "postgresql://app@127.0.0.1/test")


def test_credentials_section_names_bad_values_by_path() -> None:
    with pytest.raises(PolicyError) as info:
        _policy("crm", broker="vault", role_prefix="Bad-Prefix")
    text = str(info.value)
    assert "credentials.broker" in text
    assert "credentials.role_prefix" in text
