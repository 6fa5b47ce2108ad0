"""LgpdSqlOperator in real DAG runs (dag.test) against a real SQLite source."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from airflow.sdk import DAG

from lgpd_tasks_airflow import LgpdSqlOperator

pytestmark = pytest.mark.slow

START = datetime(2024, 1, 1)


def test_allowed_select_runs_and_returns_masked_rows(env, capfd):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        LgpdSqlOperator(
            task_id="extract",
            conn_id="crm",
            scope="crm.extract",
            sql="SELECT id, nome, cpf, email, cidade FROM customers WHERE cidade = 'São Paulo'",
            show_return_value_in_logs=True,
        )
    run = env.run(dag)
    assert env.states(run) == {"extract": ("success", 1)}
    records = [r for r in env.audit().records() if r.entry.kind == "statement"]
    assert [r.status for r in records] == ["ok"]
    assert records[0].rows == 2
    assert records[0].entry.pipeline == env.dag_id
    assert records[0].entry.task == "extract"
    out = capfd.readouterr()
    logs = out.out + out.err
    assert "Ran statement [allow, scope crm.extract]" in logs
    assert "São Paulo" not in logs
    assert "529.982.247-25" not in logs
