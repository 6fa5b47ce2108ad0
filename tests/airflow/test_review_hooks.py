"""Guarded hook methods beyond run/get_records/get_df: each is guarded, masked and translated."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from airflow.sdk import DAG, task
from lgpd_tasks_airflow import LgpdSqlOperator

from .conftest import CPFS, EMAILS

pytestmark = pytest.mark.slow

START = datetime(2024, 1, 1)


def _logs(capfd: pytest.CaptureFixture[str]) -> str:
    out = capfd.readouterr()
    return out.out + out.err


def test_get_df_by_chunks_is_masked_and_audited(env, capfd):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        guarded = LgpdSqlOperator(
            task_id="guarded", conn_id="crm", scope="crm.extract", sql="SELECT 1"
        )

        @task
        def chunks() -> dict[str, object]:
            hook = guarded.get_db_hook()
            frames = list(
                hook.get_df_by_chunks(
                    "SELECT id, cpf, email FROM customers ORDER BY id", chunksize=2
                )
            )
            text = "".join(f.to_csv() for f in frames)
            return {
                "chunks": len(frames),
                "rows": sum(len(f) for f in frames),
                "columns": list(frames[0].columns),
                "raw_seen": sum(v in text for v in (*CPFS, *EMAILS)),
            }

        chunks()
    run = env.run(dag)
    assert env.states(run)["chunks"][0] == "success"
    seen = {k: v for t, k, v in env.xcom_rows() if t == "chunks"}
    assert (seen["chunks"], seen["rows"], seen["raw_seen"]) == ("2", "3", "0")
    statements = [
        r for r in env.audit().records() if r.entry.kind == "statement" and r.entry.task == "chunks"
    ]
    assert [(r.entry.task, r.status, r.rows) for r in statements] == [("chunks", "ok", 3)]


def test_get_df_by_chunks_refusal_fails_without_retry_and_without_the_literal(env, capfd):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        guarded = LgpdSqlOperator(
            task_id="guarded", conn_id="crm", scope="crm.extract", sql="SELECT 1"
        )

        @task(retries=1, retry_delay=timedelta(seconds=1))
        def sneaky() -> None:
            hook = guarded.get_db_hook()
            for _ in hook.get_df_by_chunks(
                f"SELECT id FROM staging_orders WHERE id IN (SELECT id FROM customers WHERE cpf = '{CPFS[0]}')",
                chunksize=10,
            ):
                pass

        sneaky()
    run = env.run(dag)
    assert env.states(run)["sneaky"] == ("failed", 1)  # AirflowFailException: no retry
    logs = _logs(capfd)
    assert "lgpd-tasks refused a statement in scope 'crm.extract'" in logs
    assert CPFS[0] not in logs


def test_mapped_operator_hides_literals_from_rendered_fields_and_logs(env, capfd):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        LgpdSqlOperator.partial(task_id="lookup", conn_id="crm", scope="crm.extract").expand(
            sql=[f"SELECT id, cidade FROM customers WHERE cpf = '{cpf}'" for cpf in CPFS[:2]]
        )
    run = env.run(dag)
    assert env.states(run)["lookup"][0] == "success"
    rendered = env.rendered_fields()
    assert "SELECT id, cidade FROM customers WHERE cpf = " in rendered
    logs = _logs(capfd)
    for cpf in CPFS[:2]:
        assert cpf not in rendered
        assert cpf not in logs
