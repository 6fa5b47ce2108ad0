"""Errors PostgreSQL raises at COMMIT (deferred constraints) reach the task log scrubbed."""

from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import urlparse

import pytest
from airflow.sdk import DAG
from faker import Faker
from lgpd_tasks_airflow import LgpdSqlOperator

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

POLICY = """
version: 1
dialect: postgres
purposes:
  customer_report:
    legal_basis: legitimate_interest
    retention: 180d
scopes:
  crm.load:
    purpose: customer_report
    write:
      {schema}.customers: [id, cpf, email]
masking:
  columns: {{cpf: hmac, email: partial}}
  key_env: LGPD_MASKING_KEY
"""


def test_deferred_constraint_failing_at_commit_does_not_log_the_row(
    env, postgres_dsn, pg_schema, monkeypatch, tmp_path, capfd
):
    import psycopg

    fake = Faker("pt_BR")
    cpf, email = fake.cpf(), fake.email()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".customers (id int, cpf text, email text, '
            "CONSTRAINT one_cpf UNIQUE (cpf) DEFERRABLE INITIALLY DEFERRED)"
        )
        conn.execute(f'INSERT INTO "{pg_schema}".customers VALUES (1, %s, %s)', (cpf, email))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(schema=pg_schema))
    monkeypatch.setenv("LGPD_POLICY_FILE", str(policy))
    url = urlparse(postgres_dsn)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CRM_PG",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": url.hostname,
                "port": url.port or 5432,
                "login": url.username,
                "schema": url.path.lstrip("/"),
            }
        ),
    )
    with DAG(env.dag_id, schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        LgpdSqlOperator(
            task_id="load",
            conn_id="crm_pg",
            scope="crm.load",
            sql=f'INSERT INTO "{pg_schema}".customers (id, cpf, email) VALUES (%(id)s, %(cpf)s, %(email)s)',
            parameters={"id": 2, "cpf": cpf, "email": email},
        )
    run = env.run(dag)
    assert env.states(run)["load"][0] == "failed"
    out = capfd.readouterr()
    logs = out.out + out.err
    assert cpf not in logs
    assert email not in logs
    assert "database refused the commit (UniqueViolation)" in logs
    with psycopg.connect(postgres_dsn) as conn:
        count = conn.execute(f'SELECT count(*) FROM "{pg_schema}".customers').fetchone()
    assert count == (1,)
