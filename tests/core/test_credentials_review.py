"""The credentials broker against the real PostgreSQL: findings of the broker and CLI review."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.connection import connect
from lgpd_tasks.credentials import (
    PostgresRoleBroker,
    StaticBroker,
    libpq_url,
    redact_url,
)
from lgpd_tasks.errors import CredentialError, StatementFailed
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, parse_policy

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.postgres

WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)
ADMIN_SECRET = "AdminS3cret-never-shown"


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
  stash:
    purpose: report
    read:
      {schema}.customers: "*"
credentials:
  broker: postgres_role
  ttl: 10m
  role_prefix: {prefix}
masking:
  key_env: LGPD_MASKING_KEY
"""


@dataclass
class Env:
    dsn: str
    schema: str
    policy: Policy
    path: Path
    prefix: str

    def broker(self, url: str | None = None, **kwargs: Any) -> PostgresRoleBroker:
        return PostgresRoleBroker(url or self.dsn, role_prefix=self.prefix, **kwargs)

    def admin(self, database: str | None = None) -> Any:
        dsn = self.dsn
        if database:
            dsn = make_url(dsn).set(database=database).render_as_string(hide_password=False)
        return psycopg.connect(dsn, autocommit=True)


@pytest.fixture
def env(
    postgres_dsn: str, pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    monkeypatch.setenv("LGPD_MASKING_KEY", "review-test-key-0123456789abcdef")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".customers (id int, nome text, cpf text, cidade text);'
            f"INSERT INTO \"{pg_schema}\".customers VALUES (1, 'Ana', '529.982.247-25', 'Recife')"
        )
    prefix = f"lgpd_r{uuid.uuid4().hex[:8]}_"
    text = _policy_text(pg_schema, prefix)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    setup = Env(postgres_dsn, pg_schema, parse_policy(text), path, prefix)
    yield setup
    with setup.broker() as broker:
        for role in broker.list_roles():
            for database in ("postgres", make_url(postgres_dsn).database):
                with setup.admin(database) as conn:
                    conn.execute(
                        "SELECT lo_unlink(m.oid) FROM pg_largeobject_metadata m"
                        " JOIN pg_roles r ON r.oid = m.lomowner WHERE r.rolname = %s",
                        (role.name,),
                    )
        broker.sweep(now=datetime.now(UTC) + timedelta(days=1))


def _query_login_url(dsn: str, password: str = ADMIN_SECRET) -> str:
    """``dsn`` with its user (and a password) moved into the query string."""
    url = make_url(dsn)
    moved = url.set(username=None, password=None).update_query_dict(
        {"user": url.username or "postgres", "password": password}
    )
    return moved.render_as_string(hide_password=False)


# -- 1. the administrator's login in the query string ------------------------------------


def test_admin_login_in_the_query_string_never_reaches_the_task(env: Env, tmp_path: Path) -> None:
    admin_url = _query_login_url(env.dsn)
    assert "password=" + ADMIN_SECRET in admin_url
    audit = AuditStore.from_url(f"sqlite:///{tmp_path / 'audit.db'}")
    with connect(admin_url, policy=env.policy, scope="extract", identity=WHO, audit=audit) as conn:
        # the task logs in as its own role, not as the administrator the query names
        assert conn.execute("SELECT current_user, session_user").fetchall() == [
            (conn.role, conn.role)
        ]
        conn._guard_enabled = False  # PostgreSQL alone must refuse the ungranted column
        with pytest.raises(StatementFailed) as info:
            conn.execute(f'SELECT cpf FROM "{env.schema}".customers')
        assert info.value.sqlstate == "42501"
        conn.rollback()
    texts = [str(e.details) for e in audit.entries(EntryFilter())]
    assert texts
    assert all(ADMIN_SECRET not in t for t in texts)
    assert any("password=***" in t for t in texts)  # the audit's target, password hidden

    with env.broker(admin_url) as broker:
        cred = broker.issue(WHO, env.policy.scope("extract"))
        assert ADMIN_SECRET not in cred.url
        assert "user=" not in cred.url
        for shown in (cred.redacted_url, repr(cred), str(cred), str(cred.to_dict()), repr(broker)):
            assert ADMIN_SECRET not in shown
        with psycopg.connect(libpq_url(cred.url)) as task:
            assert task.execute("SELECT current_user").fetchone() == (cred.role,)
        broker.revoke(cred)


def test_every_url_redaction_hides_query_string_passwords() -> None:
    url = f"postgresql://db:5432/test?user=admin&password={ADMIN_SECRET}&sslmode=require"
    for shown in (
        redact_url(url),
        redact_url(url.replace(":5432", ":notaport")),
        redact_url(url.replace("password=", "sslpassword=")),
        redact_url(url.replace("password=", "passfile=")),
        repr(StaticBroker(url)),
        repr(PostgresRoleBroker(url)),
    ):
        assert ADMIN_SECRET not in shown
        assert "db" in shown
    assert redact_url(url) == "postgresql://db:5432/test?password=***&sslmode=require&user=admin"


def test_database_named_in_the_query_string_is_refused() -> None:
    with pytest.raises(CredentialError, match="dbname="):
        PostgresRoleBroker("postgresql://postgres@127.0.0.1:5432/test?dbname=postgres")


# -- 2. large objects do not outlive the task role ----------------------------------------


def test_revoke_and_sweep_unlink_the_large_objects_a_task_role_made(env: Env) -> None:
    with env.broker() as broker:
        stash_scope = env.policy.scope("stash")
        cred = broker.issue(WHO, stash_scope)
        swept = broker.issue(WHO, stash_scope, ttl=timedelta(minutes=1))
        oids = []
        for made in (cred, swept):
            with psycopg.connect(libpq_url(made.url), autocommit=True) as task:
                (oid,) = task.execute(
                    "SELECT lo_from_bytea(0, convert_to((SELECT string_agg(nome || ';' || cpf,"
                    f" ',') FROM \"{env.schema}\".customers), 'UTF8'))"
                ).fetchone() or (None,)
                task.execute(f"GRANT SELECT ON LARGE OBJECT {int(oid)} TO PUBLIC")
                oids.append(int(oid))
        broker.revoke(cred)
        report = broker.sweep(now=datetime.now(UTC) + timedelta(minutes=5))
        assert [r.name for r in report.dropped] == [swept.role]
        with env.admin() as conn:
            left = conn.execute(
                "SELECT oid FROM pg_largeobject_metadata WHERE oid = ANY(%s)", (oids,)
            ).fetchall()
        assert left == []
        # a later task of a scope without cpf cannot read what the first one stashed
        later = broker.issue(WHO, env.policy.scope("extract"))
        with (
            psycopg.connect(libpq_url(later.url), autocommit=True) as task,
            pytest.raises(psycopg.errors.UndefinedObject, match="does not exist"),
        ):
            task.execute(f"SELECT lo_get({oids[0]})")
        broker.revoke(later)


# -- 3. a revoke that cannot drop the role still locks it out ------------------------------


def test_failed_revoke_leaves_the_role_unable_to_log_in_and_names_what_blocks_it(
    env: Env,
) -> None:
    elsewhere = make_url(env.dsn).set(database="postgres")
    with env.broker() as broker:
        cred = broker.issue(WHO, env.policy.scope("extract"))
        other_db = make_url(cred.url).set(database="postgres")
        # PUBLIC holds CONNECT on database postgres by default: the task role gets in there
        with psycopg.connect(libpq_url(other_db), autocommit=True) as task:
            (oid,) = task.execute("SELECT lo_create(0)").fetchone() or (None,)
        session = psycopg.connect(libpq_url(cred.url), autocommit=True)
        try:
            with pytest.raises(CredentialError) as info:
                broker.revoke(cred)
            with pytest.raises(psycopg.OperationalError):
                session.execute("SELECT 1")  # its open session was ended all the same
        finally:
            session.close()
        message = str(info.value)
        assert "1 large object in database 'postgres'" in message
        assert "can no longer log in" in message
        with env.admin() as conn:
            row = conn.execute(
                "SELECT rolcanlogin, rolvaliduntil <= now() FROM pg_roles WHERE rolname = %s",
                (cred.role,),
            ).fetchone()
        assert row == (False, True)
        with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
            psycopg.connect(libpq_url(cred.url))
        # sweep reports it until the object in the other database is gone, then drops it
        report = broker.sweep()
        assert [name for name, _ in report.failed] == [cred.role]
        with psycopg.connect(libpq_url(elsewhere), autocommit=True) as conn:
            conn.execute("SELECT lo_unlink(%s)", (oid,))
        report = broker.sweep()
        assert [(r.name, r.reason) for r in report.dropped] == [(cred.role, "revoke interrupted")]
