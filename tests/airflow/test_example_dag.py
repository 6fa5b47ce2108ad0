"""The example contractor pipeline: loads in a DagBag, and runs end to end with an approver."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[2] / "examples" / "airflow"


def _setup_source(path: Path) -> None:
    spec = importlib.util.spec_from_file_location("setup_source", EXAMPLE / "setup_source.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["setup_source"] = module
    spec.loader.exec_module(module)
    module.create_source(path, customers=60)


def test_example_dags_load_without_import_errors(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE / "dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("contractor_pipeline")
    assert set(dag.task_ids) == {
        "extract_customers",
        "enrich",
        "load_summary",
        "write_report",
        "purge_staging_approval",
        "purge_staging",
    }
    assert dag.get_task("purge_staging_approval").mode == "reschedule"


def test_contractor_pipeline_runs_end_to_end_with_masked_xcom_and_approved_purge(
    env, monkeypatch, tmp_path, capfd
):
    from airflow.dag_processing.dagbag import DagBag

    source = tmp_path / "contractor.db"
    _setup_source(source)
    with sqlite3.connect(source) as conn:
        raw = [str(v) for r in conn.execute("SELECT cpf, email FROM customers") for v in r]
        staged = conn.execute("SELECT COUNT(*) FROM staging_orders").fetchone()[0]
    monkeypatch.setenv("CONTRACTOR_GATE_POKE_SECONDS", "1")
    monkeypatch.setenv("LGPD_POLICY_FILE", str(EXAMPLE / "policy.yaml"))
    monkeypatch.setenv("LGPD_REPORT_BUCKET", str(tmp_path / "bucket"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_CONTRACTOR_SOURCE", f'{{"conn_type": "sqlite", "host": "{source}"}}'
    )
    dag = DagBag(dag_folder=str(EXAMPLE / "dags")).get_dag("contractor_pipeline")
    env.dag_id = dag.dag_id
    with env.approver("approve", "limpeza trimestral") as decided:
        run = env.run(dag)
    states = env.states(run)
    assert {s for s, _ in states.values()} == {"success"}, states
    assert len(decided) == 1

    with sqlite3.connect(source) as conn:
        cities = conn.execute(
            "SELECT COUNT(*), SUM(clientes) FROM customer_summary WHERE run_id = ?", (run.run_id,)
        ).fetchone()
        left = conn.execute("SELECT COUNT(*) FROM staging_orders").fetchone()[0]
    assert cities[0] > 0
    assert cities[1] > 0
    assert 0 < left < staged

    stored = "\n".join(v for _, _, v in env.xcom_rows())
    reports = list((tmp_path / "bucket").rglob("customer_report.csv"))
    assert len(reports) == 1
    report = reports[0].read_text()
    logs = capfd.readouterr()
    for value in raw:
        assert value not in stored
        assert value not in report
        assert value not in logs.out + logs.err

    audit = env.audit()
    assert audit.verify().ok
    tasks = {r.entry.task for r in audit.records(limit=200) if r.entry.kind == "statement"}
    assert tasks == {"extract_customers", "load_summary", "purge_staging"}
    destinations = {e.details["destination"] for e in audit.entries() if e.kind == "masking"}
    assert "xcom:contractor_pipeline.extract_customers.return_value" in destinations
    assert reports[0].resolve().as_uri() in destinations
