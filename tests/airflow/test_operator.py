"""LgpdSqlOperator in real DAG runs (dag.test) against a real SQLite source."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from airflow.sdk import DAG, task
from lgpd_tasks_airflow import LgpdSqlOperator

pytestmark = pytest.mark.slow

START = datetime(2024, 1, 1)
RAW_VALUES = ["529.982.247-25", "111.444.777-35", "maria.silva@example.com.br", "Maria Silva"]


def _logs(capfd: pytest.CaptureFixture[str]) -> str:
    out = capfd.readouterr()
    return out.out + out.err


def test_allowed_select_runs_audited_and_logs_only_the_normalised_statement(env, capfd):
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
    entry = records[0].entry
    assert (entry.pipeline, entry.task, entry.run_id, entry.attempt) == (
        env.dag_id,
        "extract",
        run.run_id,
        1,
    )
    assert entry.details["identity"]["ti_id"]
    rendered = env.rendered_fields()
    assert "SELECT id, nome, cpf, email, cidade FROM customers WHERE cidade = " in rendered
    assert "São Paulo" not in rendered
    logs = _logs(capfd)
    assert "Ran statement [allow, scope crm.extract]" in logs
    assert "São Paulo" not in logs
    for value in RAW_VALUES:
        assert value not in logs


def test_blocked_statement_fails_without_retry_naming_rule_and_scope(env, capfd):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        LgpdSqlOperator(
            task_id="sneaky",
            conn_id="crm",
            scope="crm.extract",
            sql="SELECT id, cpf FROM staging_orders",
            retries=3,
            retry_delay=timedelta(seconds=1),
        )
    run = env.run(dag)
    assert env.states(run) == {"sneaky": ("failed", 1)}
    logs = _logs(capfd)
    assert "AirflowFailException" in logs
    assert "scope 'crm.extract'" in logs
    assert "read_scope" in logs
    refused = [r for r in env.audit().records() if r.entry.kind == "statement"]
    assert [r.entry.decision for r in refused] == ["block"]


def test_audit_outage_is_retried_and_the_retry_runs(env, monkeypatch, capfd):
    missing = env.tmp / "not-yet"
    monkeypatch.setenv("LGPD_AUDIT_URL", f"sqlite:///{missing / 'audit.db'}")

    def store_comes_back(context):
        missing.mkdir()

    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        LgpdSqlOperator(
            task_id="extract",
            conn_id="crm",
            scope="crm.extract",
            sql="SELECT id, cidade FROM customers",
            retries=1,
            retry_delay=timedelta(seconds=1),
            on_retry_callback=store_comes_back,
        )
    run = env.run(dag)
    assert env.states(run) == {"extract": ("success", 2)}
    assert "audit store unavailable (will retry)" in _logs(capfd)
    from lgpd_tasks.audit import AuditStore

    records = AuditStore.from_url(f"sqlite:///{missing / 'audit.db'}").records()
    assert [
        (r.entry.task, r.entry.attempt, r.status) for r in records if r.entry.kind == "statement"
    ] == [("extract", 2, "ok")]


def test_guarded_hook_covers_get_records_and_get_df_in_python_tasks(env, capfd):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        op = LgpdSqlOperator(task_id="reader", conn_id="crm", scope="crm.extract", sql="SELECT 1")

        @task
        def use_hook() -> dict[str, object]:
            hook = op.get_db_hook()
            rows = hook.get_records("SELECT cpf, email FROM customers ORDER BY id")
            df = hook.get_df("SELECT id, nome, cpf FROM customers ORDER BY id")
            return {"rows": len(rows), "cpfs": [r[0] for r in rows], "df_cpfs": list(df["cpf"])}

        op >> use_hook()
    run = env.run(dag)
    assert env.states(run)["use_hook"] == ("success", 1)
    statements = [r for r in env.audit().records() if r.entry.kind == "statement"]
    assert [r.entry.task for r in statements] == ["reader", "use_hook", "use_hook"]
    assert all(r.status == "ok" for r in statements)
    stored = "\n".join(v for _, _, v in env.xcom_rows())
    assert '"rows"' in stored
    for value in RAW_VALUES:
        assert value not in stored


def test_xcom_table_holds_no_raw_cpf_or_email_and_downstream_sees_masked(env, capfd):
    source = str(env.source)

    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        extract = LgpdSqlOperator(
            task_id="extract",
            conn_id="crm",
            scope="crm.extract",
            sql="SELECT id, nome, cpf, email, telefone, cidade FROM customers ORDER BY id",
        )

        # a task that reads PII around the guard: the XCom backend still masks its result
        # (Airflow itself would log the raw return value unless told not to)
        @task(show_return_value_in_logs=False)
        def leaky_frame() -> pd.DataFrame:
            import sqlite3

            with sqlite3.connect(source) as conn:
                return pd.read_sql("SELECT id, nome, cpf, email FROM customers", conn)

        @task
        def enrich(rows: list[tuple[object, ...]], frame: pd.DataFrame) -> dict[str, int]:
            seen = " ".join(str(v) for row in rows for v in row) + frame.to_csv()
            return {
                "rows": len(rows),
                "raw_cpf_seen": sum(cpf in seen for cpf in RAW_VALUES[:2]),
                "raw_email_seen": int("maria.silva@example.com.br" in seen),
            }

        enrich(extract.output, leaky_frame())
    run = env.run(dag)
    assert set(s for s, _ in env.states(run).values()) == {"success"}
    stored = env.xcom_rows()
    assert {t for t, _, _ in stored} == {"extract", "leaky_frame", "enrich"}
    text = "\n".join(v for _, _, v in stored)
    for value in RAW_VALUES:
        assert value not in text
    seen = {k: v for t, k, v in stored if t == "enrich"}
    assert (seen["rows"], seen["raw_cpf_seen"], seen["raw_email_seen"]) == ("3", "0", "0")
    masking = [e for e in env.audit().entries() if e.kind == "masking"]
    destinations = {e.details["destination"] for e in masking}
    assert f"xcom:{env.dag_id}.leaky_frame.return_value" in destinations
    leaky = next(e for e in masking if e.task == "leaky_frame")
    assert leaky.details["lineage"] == [
        {
            "target": f"xcom:{env.dag_id}.leaky_frame.return_value",
            "sources": [f"airflow:{env.dag_id}.leaky_frame"],
        }
    ]
    assert {c["column"] for c in leaky.details["report"]["columns"]} >= {"cpf", "email", "nome"}
    logs = _logs(capfd)
    for value in RAW_VALUES[:3]:
        assert value not in logs


def test_sql_file_templates_render(env, tmp_path: Path):
    (tmp_path / "count.sql").write_text(
        "SELECT cidade, COUNT(*) FROM customers WHERE created_at >= '{{ params.since }}' GROUP BY cidade"
    )
    with DAG(
        env.dag_id, schedule=None, start_date=START, template_searchpath=[str(tmp_path)]
    ) as dag:
        LgpdSqlOperator(
            task_id="count",
            conn_id="crm",
            scope="crm.extract",
            sql="count.sql",
            params={"since": "2024-02-01"},
        )
    run = env.run(dag)
    assert env.states(run) == {"count": ("success", 1)}
    (record,) = [r for r in env.audit().records() if r.entry.kind == "statement"]
    assert record.rows == 2
    assert "2024-02-01" not in record.entry.details["normalized"]


def test_database_failure_is_retried_with_a_scrubbed_message(env, capfd):
    import sqlite3

    with sqlite3.connect(env.source) as conn:
        conn.execute("CREATE UNIQUE INDEX one_city ON customer_summary (cidade)")
        conn.execute("INSERT INTO customer_summary VALUES ('São Paulo', 1)")
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        LgpdSqlOperator(
            task_id="load",
            conn_id="crm",
            scope="crm.load",
            sql="INSERT INTO customer_summary (cidade, clientes) VALUES ('São Paulo', 2)",
            retries=1,
            retry_delay=timedelta(seconds=1),
        )
    run = env.run(dag)
    assert env.states(run) == {"load": ("failed", 2)}
    logs = _logs(capfd)
    assert "statement failed (IntegrityError)" in logs
    outcomes = [r.outcome for r in env.audit().records() if r.entry.kind == "statement"]
    assert [o.details["status"] for o in outcomes if o is not None] == ["error", "error"]


def test_a_plain_python_task_does_not_log_its_raw_return_value(env, capfd, monkeypatch):
    source = str(env.source)

    with DAG(env.dag_id, schedule=None, start_date=START) as dag:

        @task  # Airflow's default: log the return value, before XCom masks it
        def customers() -> pd.DataFrame:
            import sqlite3

            with sqlite3.connect(source) as conn:
                return pd.read_sql("SELECT id, nome, cpf, email FROM customers", conn)

        @task
        def total() -> int:
            return 42

        customers()
        total()
    run = env.run(dag)
    assert set(s for s, _ in env.states(run).values()) == {"success"}
    logs = _logs(capfd)
    assert logs.count("Returned value not shown") == 2
    for value in RAW_VALUES:
        assert value not in logs

    # a deployment that wants Airflow's behaviour back says so
    monkeypatch.setenv("AIRFLOW__LGPD__LOG_RETURN_VALUES", "True")
    with DAG(f"{env.dag_id}_shown", schedule=None, start_date=START) as shown:

        @task
        def answer() -> int:
            return 4242

        answer()
    run = env.run(shown)
    assert set(s for s, _ in env.states(run).values()) == {"success"}
    assert "Returned value was: 4242" in _logs(capfd)
