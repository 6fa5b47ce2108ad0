"""The subject trail stored on PostgreSQL (blocks of bytea digests), and purge there."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from faker import Faker

from lgpd_tasks.audit import AuditStore, dispose_engines
from lgpd_tasks.connection import connect
from lgpd_tasks.evidence.export import export_audit
from lgpd_tasks.evidence.objects import open_target
from lgpd_tasks.evidence.purge import purge_before
from lgpd_tasks.evidence.reports import subject_report
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import parse_policy

POLICY = """
version: 1
dialect: sqlite
purposes: {report: {legal_basis: legitimate_interest, retention: 30d}}
scopes:
  report.extract: {purpose: report, read: {customers: [id, nome, cpf]}}
subjects:
  customers: cpf
masking:
  columns: {cpf: hmac, nome: redact}
"""


@pytest.mark.postgres
def test_trail_on_postgres_finds_the_person_and_survives_purge(
    pg_schema: str, postgres_dsn: str, masking_key: str, tmp_path: Path
) -> None:
    url = f"{postgres_dsn}?options=-csearch_path%3D{pg_schema}"
    fake = Faker("pt_BR")
    people = [(i, fake.name(), fake.unique.cpf()) for i in range(1, 12_001)]
    source = tmp_path / "crm.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, nome TEXT, cpf TEXT)")
        db.executemany("INSERT INTO customers VALUES (?, ?, ?)", people)
    policy = parse_policy(POLICY)
    store = AuditStore.from_url(url)
    who = TaskIdentity("airflow", "report", "extract", run_id="r1")
    try:
        with connect(
            f"sqlite:///{source}", policy=policy, scope="report.extract", identity=who, audit=store
        ) as conn:
            cur = conn.execute("SELECT id, nome, cpf FROM customers")
            while cur.fetchmany(5000):
                pass
        with psycopg.connect(postgres_dsn) as raw:
            count, size = raw.execute(
                "SELECT sum(count), sum(octet_length(digests)) "
                f'FROM "{pg_schema}".lgpd_subject_digests'
            ).fetchone()
        assert (count, size) == (len(people), 16 * len(people))
        report = subject_report(store, people[777][2], policy=policy)
        assert [a["principal"] for a in report["accesses"]] == ["airflow:report.extract"]
        assert report["accesses"][0]["rows"] == len(people)
        export_audit(store, open_target(str(tmp_path / "out")))
        from datetime import UTC, datetime

        assert (
            purge_before(store, datetime.now(UTC), identity=TaskIdentity.for_cli("dpo")).records
            == 2
        )
        assert store.verify().ok
        with psycopg.connect(postgres_dsn) as raw:
            left = raw.execute(
                f'SELECT count(*) FROM "{pg_schema}".lgpd_subject_digests'
            ).fetchone()
        assert left == (0,)
    finally:
        dispose_engines()
