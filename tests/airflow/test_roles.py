"""LgpdSqlOperator with the PostgreSQL role broker: each task attempt logs in as its own role."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import pytest
from airflow.sdk import DAG, task
from lgpd_tasks_airflow import LgpdSqlOperator, gated_sql

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

START = datetime(2024, 1, 1)

POLICY = """
version: 1
dialect: postgres
purposes:
  customer_report:
    legal_basis: legitimate_interest
    retention: 180d
scopes:
  crm.extract:
    purpose: customer_report
    read:
      {schema}.customers: [id, cidade]
  crm.load:
    purpose: customer_report
    read:
      {schema}.customer_summary: [cidade]
    write:
      {schema}.customer_summary: [cidade, clientes]
  crm.purge:
    purpose: customer_report
    read:
      {schema}.staging_orders: [id]
    write:
      {schema}.staging_orders: "*"
    require_approval: [delete]
credentials:
  broker: postgres_role
  ttl: 10m
  role_prefix: {prefix}
{admin}
masking:
  columns: {{cpf: hmac}}
  key_env: LGPD_MASKING_KEY
"""


class RoleEnv:
    def __init__(self, env, dsn: str, schema: str, prefix: str) -> None:
        self.env = env
        self.dsn = dsn
        self.schema = schema
        self.prefix = prefix

    def roles(self) -> list[str]:
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (self.prefix,)
            ).fetchall()
        return [r[0] for r in rows]

    def intents(self) -> list:
        return [
            r
            for r in self.env.audit().records()
            if r.entry.kind == "statement" and r.entry.details.get("event") == "intent"
        ]

    def xcom(self, task_id: str) -> str:
        return "\n".join(v for t, _, v in self.env.xcom_rows() if t == task_id)


def _setup(env, dsn, schema, monkeypatch, tmp_path, *, login: str, admin_env: bool) -> RoleEnv:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{schema}".customers (id int, nome text, cpf text, cidade text);'
            f'CREATE TABLE "{schema}".customer_summary (cidade text, clientes int);'
            f'CREATE TABLE "{schema}".staging_orders (id int);'
            f'INSERT INTO "{schema}".staging_orders SELECT generate_series(1, 10);'
            f'INSERT INTO "{schema}".customers VALUES '
            "(1, 'Maria Silva', '529.982.247-25', 'Recife'), "
            "(2, 'João Souza', '111.444.777-35', 'Recife')"
        )
    prefix = f"lgpd_a{uuid.uuid4().hex[:8]}_"
    admin = "  admin_url_env: LGPD_TEST_PG_ADMIN_URL" if admin_env else ""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(schema=schema, prefix=prefix, admin=admin))
    monkeypatch.setenv("LGPD_POLICY_FILE", str(policy))
    if admin_env:
        monkeypatch.setenv("LGPD_TEST_PG_ADMIN_URL", dsn)
    url = urlparse(dsn)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CRM_PG",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": url.hostname,
                "port": url.port or 5432,
                "login": login,
                "schema": url.path.lstrip("/"),
            }
        ),
    )
    return RoleEnv(env, dsn, schema, prefix)


@pytest.fixture
def roles(env, postgres_dsn, pg_schema, monkeypatch, tmp_path) -> Iterator[RoleEnv]:
    """The task connection ``crm_pg`` is the broker's administrator (the default)."""
    login = urlparse(postgres_dsn).username or "postgres"
    yield from _finish(
        _setup(env, postgres_dsn, pg_schema, monkeypatch, tmp_path, login=login, admin_env=False)
    )


@pytest.fixture
def roles_admin_env(env, postgres_dsn, pg_schema, monkeypatch, tmp_path) -> Iterator[RoleEnv]:
    """The administrator comes from $LGPD_TEST_PG_ADMIN_URL; ``crm_pg``'s login is unusable."""
    yield from _finish(
        _setup(env, postgres_dsn, pg_schema, monkeypatch, tmp_path, login="nobody", admin_env=True)
    )


def _finish(setup: RoleEnv) -> Iterator[RoleEnv]:
    from lgpd_tasks_airflow.brokers import close_brokers

    from lgpd_tasks.credentials import PostgresRoleBroker

    try:
        yield setup
    finally:
        close_brokers()
        # only this test's prefix, never the default one
        with PostgresRoleBroker(setup.dsn, role_prefix=setup.prefix) as broker:
            broker.sweep(now=datetime.now(UTC) + timedelta(days=1))


def test_operator_runs_as_a_fresh_task_role_and_revokes_it(roles: RoleEnv) -> None:
    schema = roles.schema
    with DAG(roles.env.dag_id, schedule=None, start_date=START) as dag:
        extract = LgpdSqlOperator(
            task_id="extract",
            conn_id="crm_pg",
            scope="crm.extract",
            sql=f'SELECT current_user AS who, cidade FROM "{schema}".customers ORDER BY id',
        )
        load = LgpdSqlOperator(
            task_id="load",
            conn_id="crm_pg",
            scope="crm.load",
            sql=f"INSERT INTO \"{schema}\".customer_summary (cidade, clientes) VALUES ('Recife', 2)",
            autocommit=True,
        )
        extract >> load
    run = roles.env.run(dag)
    assert roles.env.states(run) == {"extract": ("success", 1), "load": ("success", 1)}
    intents = roles.intents()
    assert [r.entry.task for r in intents] == ["extract", "load"]
    role_of = {r.entry.task: r.entry.details["role"] for r in intents}
    assert all(role.startswith(roles.prefix) for role in role_of.values())
    assert role_of["extract"] != role_of["load"]
    # two tasks, two roles, one broker (one administrator connection) in this process
    from lgpd_tasks_airflow import brokers

    assert len(brokers._BROKERS) == 1
    # the statement itself saw the task role as current_user, not the connection's login
    assert role_of["extract"] in roles.xcom("extract")
    assert roles.roles() == []


def test_database_refuses_an_ungranted_column_with_the_guard_off(roles: RoleEnv) -> None:
    schema = roles.schema
    with DAG(roles.env.dag_id, schedule=None, start_date=START) as dag:
        op = LgpdSqlOperator(
            task_id="reader", conn_id="crm_pg", scope="crm.extract", sql="SELECT 1"
        )

        @task
        def bypass() -> None:
            hook = op.get_db_hook()
            with closing(hook.get_conn()) as conn:
                (who,) = conn.execute("SELECT current_user").fetchone()
                assert who == conn.role
                conn._guard_enabled = False  # the test-only seam: PostgreSQL is the only check
                # raises StatementFailed; the audit outcome below carries PostgreSQL's SQLSTATE
                conn.execute(f'SELECT cpf FROM "{schema}".customers')

        op >> bypass()
    run = roles.env.run(dag)
    assert roles.env.states(run) == {"reader": ("success", 1), "bypass": ("failed", 1)}
    (refused,) = [r for r in roles.intents() if r.entry.details.get("guard") == "disabled"]
    assert refused.entry.task == "bypass"
    assert refused.entry.details["role"].startswith(roles.prefix)
    assert refused.status == "error"
    assert refused.outcome is not None
    assert refused.outcome.details["sqlstate"] == "42501"  # insufficient_privilege
    (first,) = [
        r for r in roles.intents() if r.entry.task == "bypass" and "guard" not in r.entry.details
    ]
    assert first.status == "ok"
    assert first.entry.details["role"] == refused.entry.details["role"]
    assert roles.roles() == []


def test_failed_tasks_leave_no_role_behind(roles: RoleEnv) -> None:
    schema = roles.schema
    with DAG(roles.env.dag_id, schedule=None, start_date=START) as dag:
        # refused by the guard before it reaches the database
        LgpdSqlOperator(
            task_id="outside_scope",
            conn_id="crm_pg",
            scope="crm.extract",
            sql=f'SELECT cpf FROM "{schema}".customers',
        )
        # admitted by the guard, failed by the database (division by zero)
        LgpdSqlOperator(
            task_id="breaks",
            conn_id="crm_pg",
            scope="crm.extract",
            sql=f'SELECT id / (id - id) AS boom FROM "{schema}".customers',
        )
    run = roles.env.run(dag)
    assert roles.env.states(run) == {
        "outside_scope": ("failed", 1),
        "breaks": ("failed", 1),
    }
    (broke,) = roles.intents()
    assert broke.entry.task == "breaks"
    assert broke.entry.details["role"].startswith(roles.prefix)
    assert broke.outcome is not None
    assert broke.outcome.details["sqlstate"] == "22012"
    assert roles.roles() == []


def test_administrator_url_from_the_policy_env_var(roles_admin_env: RoleEnv) -> None:
    roles = roles_admin_env
    with DAG(roles.env.dag_id, schedule=None, start_date=START) as dag:
        LgpdSqlOperator(
            task_id="extract",
            conn_id="crm_pg",
            scope="crm.extract",
            sql=f'SELECT current_user AS who, cidade FROM "{roles.schema}".customers',
        )
    run = roles.env.run(dag)
    assert roles.env.states(run) == {"extract": ("success", 1)}
    (intent,) = roles.intents()
    assert intent.entry.details["role"].startswith(roles.prefix)
    assert intent.entry.details["role"] in roles.xcom("extract")
    assert "nobody" not in roles.xcom("extract")
    assert roles.roles() == []


def test_gated_statement_runs_as_a_task_role_after_approval(roles: RoleEnv) -> None:
    import psycopg

    with DAG(roles.env.dag_id, schedule=None, start_date=START) as dag:
        gated_sql(
            "purge",
            f'DELETE FROM "{roles.schema}".staging_orders WHERE id > 5',
            "crm.purge",
            conn_id="crm_pg",
            poke_interval=1,
        )
    with roles.env.approver("approve", "janela de manutenção") as decided:
        run = roles.env.run(dag)
    assert roles.env.states(run) == {"purge_approval": ("success", 1), "purge": ("success", 1)}
    assert len(decided) == 1
    (intent,) = roles.intents()
    assert intent.entry.decision == "approved"
    assert intent.entry.details["role"].startswith(roles.prefix)
    with psycopg.connect(roles.dsn) as conn:
        left = conn.execute(f'SELECT count(*) FROM "{roles.schema}".staging_orders').fetchone()
    assert left == (5,)
    assert roles.roles() == []
