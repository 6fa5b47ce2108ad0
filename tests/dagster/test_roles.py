"""GuardedDatabaseResource with the PostgreSQL role broker: each step logs in as its own role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from lgpd_tasks_dagster import GuardedDatabaseResource
from sqlalchemy.engine import make_url

from lgpd_tasks.audit import AuditRecord, AuditStore
from lgpd_tasks.credentials import PostgresRoleBroker

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.postgres

POLICY = """
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
  columns: {{cpf: hmac}}
  key_env: LGPD_MASKING_KEY
"""


@dataclass
class Roles:
    dsn: str
    schema: str
    prefix: str
    policy_file: Path
    audit_url: str
    instance: dg.DagsterInstance

    def resource(self, **fields: Any) -> GuardedDatabaseResource:
        values: dict[str, Any] = {
            "database_url": self.dsn,
            "audit_url": self.audit_url,
            "policy_file": str(self.policy_file),
            "scope": "extract",
        }
        values.update(fields)
        return GuardedDatabaseResource(**values)

    def materialize(self, assets: list[Any], lgpd: GuardedDatabaseResource) -> Any:
        return dg.materialize(
            assets, resources={"lgpd": lgpd}, instance=self.instance, raise_on_error=False
        )

    def roles(self) -> list[str]:
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (self.prefix,)
            ).fetchall()
        return [r[0] for r in rows]

    def intents(self) -> list[AuditRecord]:
        return [
            r
            for r in AuditStore.from_url(self.audit_url).records()
            if r.entry.kind == "statement" and r.entry.details.get("event") == "intent"
        ]


@pytest.fixture
def roles(
    postgres_dsn: str,
    pg_schema: str,
    tmp_path: Path,
    masking_key: str,
    dagster_instance: dg.DagsterInstance,
) -> Iterator[Roles]:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".customers (id int, nome text, cpf text, cidade text);'
            f'INSERT INTO "{pg_schema}".customers VALUES '
            "(1, 'Maria Silva', '529.982.247-25', 'Recife'), "
            "(2, 'João Souza', '111.444.777-35', 'Olinda')"
        )
    prefix = f"lgpd_d{uuid.uuid4().hex[:8]}_"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(schema=pg_schema, prefix=prefix))
    yield Roles(
        postgres_dsn,
        pg_schema,
        prefix,
        policy,
        f"sqlite:///{tmp_path / 'audit.db'}",
        dagster_instance,
    )
    # only this test's prefix, never the default one
    with PostgresRoleBroker(postgres_dsn, role_prefix=prefix) as broker:
        broker.sweep(now=datetime.now(UTC) + timedelta(days=1))


def test_asset_runs_as_a_fresh_step_role_and_revokes_it(roles: Roles) -> None:
    schema = roles.schema

    @dg.asset
    def cities(lgpd: GuardedDatabaseResource) -> pd.DataFrame:
        return lgpd.query_df(f'SELECT current_user AS who, cidade FROM "{schema}".customers')

    @dg.asset(deps=[cities])
    def second(lgpd: GuardedDatabaseResource) -> pd.DataFrame:
        return lgpd.query_df("SELECT current_user AS who")

    result = roles.materialize([cities, second], roles.resource())
    assert result.success
    whos = {name: set(result.output_for_node(name)["who"]) for name in ("cities", "second")}
    intents = roles.intents()
    role_of = {r.entry.task: r.entry.details["role"] for r in intents}
    assert len(intents) == 2
    for name in ("cities", "second"):
        # the statement itself ran as the role the audit names, made for this step
        assert whos[name] == {role_of[name]}
        assert role_of[name].startswith(roles.prefix)
    assert role_of["cities"] != role_of["second"]
    assert roles.roles() == []


def test_database_refuses_an_ungranted_column_with_the_guard_off(roles: Roles) -> None:
    schema = roles.schema

    @dg.asset
    def bypass(lgpd: GuardedDatabaseResource) -> None:
        with lgpd.get_connection() as conn:
            conn._guard_enabled = False  # the test-only seam: PostgreSQL is the only check
            conn.execute(f'SELECT cpf FROM "{schema}".customers')

    result = roles.materialize([bypass], roles.resource())
    assert not result.success
    (intent,) = roles.intents()
    assert intent.entry.details["guard"] == "disabled"
    assert intent.entry.details["role"].startswith(roles.prefix)
    assert intent.outcome is not None
    assert intent.outcome.details["sqlstate"] == "42501"  # insufficient_privilege
    assert roles.roles() == []


def test_admin_login_in_the_query_string_is_neither_used_by_the_step_nor_shown(
    roles: Roles,
) -> None:
    schema = roles.schema
    secret = "AdminS3cret-in-the-query"
    url = make_url(roles.dsn)
    admin = (
        url.set(username=None)
        .update_query_dict({"user": url.username or "postgres", "password": secret})
        .render_as_string(hide_password=False)
    )

    @dg.asset
    def who(lgpd: GuardedDatabaseResource) -> pd.DataFrame:
        return lgpd.query_df(f'SELECT current_user AS who, cidade FROM "{schema}".customers')

    resource = roles.resource(database_url=admin)
    assert secret not in resource.redacted_database_url()
    assert "password=***" in resource.redacted_database_url()
    result = roles.materialize([who], resource)
    assert result.success
    (intent,) = roles.intents()
    assert set(result.output_for_node("who")["who"]) == {intent.entry.details["role"]}
    assert intent.entry.details["role"].startswith(roles.prefix)
    assert secret not in str(intent.entry.details)
    assert roles.roles() == []


def test_failed_steps_leave_no_role_behind(roles: Roles) -> None:
    schema = roles.schema
    seen: list[str] = []

    @dg.asset
    def outside_scope(lgpd: GuardedDatabaseResource) -> pd.DataFrame:
        with lgpd.get_connection() as conn:
            seen.extend(roles.roles())  # the role exists while the step runs
            return conn.query_df(f'SELECT cpf FROM "{schema}".customers')

    @dg.asset
    def raises(lgpd: GuardedDatabaseResource) -> None:
        with lgpd.get_connection() as conn:
            conn.execute(f'SELECT cidade FROM "{schema}".customers').fetchall()
            raise RuntimeError("the step's own code fails after its statement")

    result = roles.materialize([outside_scope, raises], roles.resource())
    assert not result.success
    failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert failed == {"outside_scope", "raises"}
    assert len(seen) == 1
    assert seen[0].startswith(roles.prefix)
    (ran,) = roles.intents()
    assert ran.entry.task == "raises"
    assert ran.entry.details["role"].startswith(roles.prefix)
    assert roles.roles() == []


def test_administrator_url_from_an_env_var_field(
    roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LGPD_TEST_PG_ADMIN_URL", roles.dsn)
    # the target's own login does not exist: only the administrator field can issue roles
    target = make_url(roles.dsn).set(username="nobody").render_as_string(hide_password=False)
    lgpd = roles.resource(
        database_url=target, admin_database_url=dg.EnvVar("LGPD_TEST_PG_ADMIN_URL")
    )

    @dg.asset
    def cities(lgpd: GuardedDatabaseResource) -> pd.DataFrame:
        return lgpd.query_df(f'SELECT current_user AS who, cidade FROM "{roles.schema}".customers')

    result = roles.materialize([cities], lgpd)
    assert result.success
    (intent,) = roles.intents()
    role = intent.entry.details["role"]
    assert role.startswith(roles.prefix)
    assert set(result.output_for_node("cities")["who"]) == {role}
    assert roles.roles() == []


def test_one_broker_per_resource_instance_closed_after_the_run(
    roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[PostgresRoleBroker] = []
    closed: list[PostgresRoleBroker] = []
    real_init, real_close = PostgresRoleBroker.__init__, PostgresRoleBroker.close

    def init(self: PostgresRoleBroker, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        made.append(self)

    def close(self: PostgresRoleBroker) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(PostgresRoleBroker, "__init__", init)
    monkeypatch.setattr(PostgresRoleBroker, "close", close)

    @dg.asset
    def twice(lgpd: GuardedDatabaseResource) -> int:
        for _ in range(3):
            lgpd.query_df(f'SELECT cidade FROM "{roles.schema}".customers')
        return 3

    result = roles.materialize([twice], roles.resource())
    assert result.success
    assert len(roles.intents()) == 3
    assert len({r.entry.details["role"] for r in roles.intents()}) == 3
    assert len(made) == 1  # three connections, three roles, one administrator connection
    assert closed == made
    assert roles.roles() == []
