"""LgpdSqlOperator on a real PostgreSQL connection (PostgresHook, psycopg, autocommit)."""

from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import urlparse

import pytest
from airflow.sdk import DAG
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
  crm.extract:
    purpose: customer_report
    read:
      {schema}.customers: [id, nome, cpf, email, cidade]
  crm.load:
    purpose: customer_report
    write:
      {schema}.customer_summary: [cidade, clientes]
masking:
  columns: {{cpf: hmac, email: partial, nome: redact}}
  key_env: LGPD_MASKING_KEY
"""


@pytest.fixture
def pg_env(env, postgres_dsn, pg_schema, monkeypatch, tmp_path):
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".customers (id int, nome text, cpf text, email text, '
            "cidade text)"
        )
        conn.execute(f'CREATE TABLE "{pg_schema}".customer_summary (cidade text, clientes int)')
        conn.execute(
            f'INSERT INTO "{pg_schema}".customers VALUES '
            "(1, 'Maria Silva', '529.982.247-25', 'maria.silva@example.com.br', 'Recife'), "
            "(2, 'João Souza', '111.444.777-35', 'joao.souza@gov.br', 'Recife')"
        )
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
    return env, pg_schema, postgres_dsn


def test_postgres_select_is_masked_and_insert_runs_with_autocommit(pg_env, capfd):
    env, schema, dsn = pg_env
    with DAG(env.dag_id, schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        extract = LgpdSqlOperator(
            task_id="extract",
            conn_id="crm_pg",
            scope="crm.extract",
            sql=f'SELECT id, nome, cpf, email, cidade FROM "{schema}".customers ORDER BY id',
        )
        load = LgpdSqlOperator(
            task_id="load",
            conn_id="crm_pg",
            scope="crm.load",
            sql=f"INSERT INTO \"{schema}\".customer_summary (cidade, clientes) VALUES ('Recife', 2)",
            autocommit=True,
        )
        extract >> load
    run = env.run(dag)
    assert env.states(run) == {"extract": ("success", 1), "load": ("success", 1)}
    import psycopg

    with psycopg.connect(dsn) as conn:
        assert conn.execute(f'SELECT * FROM "{schema}".customer_summary').fetchall() == [
            ("Recife", 2)
        ]
    stored = "\n".join(v for _, _, v in env.xcom_rows())
    assert "Recife" in stored
    for raw in ("529.982.247-25", "maria.silva@example.com.br", "Maria Silva"):
        assert raw not in stored
    out = capfd.readouterr()
    assert "Ran statement [allow, scope crm.load]" in out.out + out.err
    assert "'Recife', 2" not in out.out + out.err
    statements = [r for r in env.audit().records() if r.entry.kind == "statement"]
    assert [(r.entry.task, r.status, r.rows) for r in statements] == [
        ("extract", "ok", 2),
        ("load", "ok", 1),
    ]
