"""Airflow overhead: one task extracting 100,000 rows from PostgreSQL, common-sql vs lgpd-tasks.

Plain: ``SQLExecuteQueryOperator``. Guarded: ``LgpdSqlOperator`` (guard, audit intent and
outcome, rows masked in the cursor). Both push the rows to XCom through Airflow's default
backend and run under ``dag.test()`` on a throwaway SQLite metadata database. Prints the
median and best task duration (``task_instance.duration``) side by side and their ratios.

    .venv/bin/python benchmarks/airflow_overhead.py [--rows 100000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

HOME = Path(tempfile.mkdtemp(prefix="lgpd-bench-airflow-"))
(HOME / "dags").mkdir()
DSN = os.environ.get("LGPD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
os.environ.update(
    {
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(HOME / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
        "LGPD_AUDIT_URL": f"sqlite:///{HOME / 'audit.db'}",
        "LGPD_MASKING_KEY": "benchmark-key-not-secret",
    }
)

POLICY = """
version: 1
dialect: postgres
purposes:
  bench:
    legal_basis: legitimate_interest
    retention: 30d
scopes:
  bench.read:
    purpose: bench
    read:
      {schema}.people: [id, nome, cpf, email, cidade, valor]
    max_rows: 1000000
masking:
  columns: {{cpf: hmac, email: partial, nome: redact}}
  detect: true
"""


def seed(schema: str, rows: int) -> None:
    import psycopg
    from faker import Faker

    fake = Faker("pt_BR")
    Faker.seed(1)
    rng = random.Random(1)
    names = [fake.name() for _ in range(2000)]
    emails = [fake.email() for _ in range(2000)]
    cpfs = [fake.cpf() for _ in range(5000)]
    cities = [fake.city() for _ in range(300)]
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".people (id int primary key, nome text, cpf text, '
            "email text, cidade text, valor numeric(10,2))"
        )
        with conn.cursor().copy(
            f'COPY "{schema}".people (id, nome, cpf, email, cidade, valor) FROM STDIN'
        ) as copy:
            for i in range(rows):
                copy.write_row(
                    (
                        i,
                        rng.choice(names),
                        rng.choice(cpfs),
                        rng.choice(emails),
                        rng.choice(cities),
                        round(rng.uniform(1, 5000), 2),
                    )
                )


def drop(schema: str) -> None:
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pg_connection() -> str:
    url = urlparse(DSN)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": url.hostname,
            "port": url.port or 5432,
            "login": url.username,
            "password": url.password,
            "schema": url.path.lstrip("/"),
        }
    )


def run_once(kind: str, schema: str, number: int) -> float:
    """One dag.test() run of the extract task; returns its task_instance.duration (s)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
    from airflow.sdk import DAG
    from airflow.utils.session import create_session
    from lgpd_tasks_airflow import LgpdSqlOperator

    sql = f'SELECT id, nome, cpf, email, cidade, valor FROM "{schema}".people'
    dag_id = f"bench_{kind}_{number}"
    with DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        if kind == "plain":
            SQLExecuteQueryOperator(task_id="extract", conn_id="bench_pg", sql=sql)
        else:
            LgpdSqlOperator(task_id="extract", conn_id="bench_pg", scope="bench.read", sql=sql)
    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    run = dag.test()
    with create_session() as session:
        (ti,) = run.get_task_instances(session=session)
        if str(ti.state) != "success":
            raise SystemExit(f"{kind} run {number} ended {ti.state}")
        return float(ti.duration)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    policy = HOME / "policy.yaml"
    policy.write_text(POLICY.format(schema=schema))
    os.environ["LGPD_POLICY_FILE"] = str(policy)
    os.environ["AIRFLOW_CONN_BENCH_PG"] = pg_connection()

    import logging

    from airflow.utils import db

    started = time.perf_counter()
    db.resetdb(skip_init=False)
    print(f"metadata database ready in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    seed(schema, args.rows)
    logging.disable(logging.INFO)  # keep Airflow's per-task log lines out of the figures' way
    try:
        times: dict[str, list[float]] = {"plain": [], "guarded": []}
        for kind in times:  # warm-up: imports, first connection, plan caches
            run_once(kind, schema, 0)
        for number in range(1, args.repeat + 1):
            for kind in times:  # interleaved, so drift hits both alike
                times[kind].append(run_once(kind, schema, number))
    finally:
        drop(schema)
    plain = statistics.median(times["plain"])
    guarded = statistics.median(times["guarded"])
    table: list[tuple[str, Any, Any]] = [
        ("operator", "SQLExecuteQueryOperator", "LgpdSqlOperator"),
        ("rows", args.rows, args.rows),
        ("median task time (s)", f"{plain:.3f}", f"{guarded:.3f}"),
        ("best task time (s)", f"{min(times['plain']):.3f}", f"{min(times['guarded']):.3f}"),
        (
            "runs (s)",
            " ".join(f"{t:.2f}" for t in times["plain"]),
            " ".join(f"{t:.2f}" for t in times["guarded"]),
        ),
    ]
    width = max(len(r[0]) for r in table)
    for name, left, right in table:
        print(f"{name:<{width}}  {left!s:>28}  {right!s:>28}")
    best = min(times["guarded"]) / min(times["plain"])
    print(f"ratio guarded / plain: median {guarded / plain:.2f}, best {best:.2f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
