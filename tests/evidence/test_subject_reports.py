"""The subject trail through GuardedConnection, the data-subject report and the RoPA."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from faker import Faker

from lgpd_tasks.audit import AuditStore
from lgpd_tasks.cli import main
from lgpd_tasks.connection import connect
from lgpd_tasks.evidence.destinations import write_report
from lgpd_tasks.evidence.reports import ropa_report, subject_report
from lgpd_tasks.evidence.subjects import SubjectTrail, access_coverage
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, parse_policy

POLICY = """
version: 1
dialect: sqlite
purposes:
  customer_report:
    description: Monthly customer summary for the sales team
    legal_basis: legitimate_interest
    retention: 180d
    data_subjects: [customers]
  support:
    description: Fixing customer records on request
    legal_basis: contract_performance
    retention: 5y
scopes:
  customer_report.extract:
    purpose: customer_report
    read: {customers: [id, nome, cpf, email, cidade], orders: "*"}
  customer_report.load:
    purpose: customer_report
    read: {customer_summary: [cidade]}
    write: {customer_summary: [cidade, clientes, receita]}
  support.fix:
    purpose: support
    read: {customers: [id, cpf, email]}
    write: {customers: [email]}
subjects:
  customers: {key: cpf, primary_key: id, category: customers}
  orders: {key: customer_id, references: customers}
masking:
  columns: {cpf: hmac, email: partial, nome: redact}
"""


@pytest.fixture
def policy(masking_key: str, tmp_path: Path) -> Policy:
    (tmp_path / "policy.yaml").write_text(POLICY)
    return parse_policy(POLICY, str(tmp_path / "policy.yaml"))


@pytest.fixture
def people() -> list[dict[str, Any]]:
    fake = Faker("pt_BR")
    Faker.seed(7)
    return [
        {
            "id": i,
            "nome": fake.name(),
            "cpf": fake.cpf(),
            "email": fake.email(),
            "cidade": fake.city(),
        }
        for i in range(1, 41)
    ]


@pytest.fixture
def source(tmp_path: Path, people: list[dict[str, Any]]) -> str:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, nome TEXT, cpf TEXT, email TEXT, cidade TEXT);"
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL);"
            "CREATE TABLE customer_summary (cidade TEXT, clientes INTEGER, receita REAL);"
        )
        db.executemany("INSERT INTO customers VALUES (:id, :nome, :cpf, :email, :cidade)", people)
        db.executemany(
            "INSERT INTO orders (customer_id, total) VALUES (?, ?)",
            [(p["id"], 10.0 * p["id"]) for p in people],
        )
    return f"sqlite:///{path}"


AIRFLOW = TaskIdentity("airflow", "customer_report", "extract", run_id="scheduled__2025-01-01")
AIRFLOW_LOAD = TaskIdentity("airflow", "customer_report", "load", run_id="scheduled__2025-01-01")
DAGSTER = TaskIdentity("dagster", "support_job", "fix_email", run_id="7f3c-run")
OTHER = TaskIdentity("dagster", "customer_report_assets", "high_value", run_id="9a1d-run")


def _pipelines(
    source: str, audit: str, policy: Policy, planted: dict[str, Any], bucket_dir: Path
) -> None:
    """An Airflow-like run that reads everyone, a Dagster fix of one person, and others."""
    with connect(
        source, policy=policy, scope="customer_report.extract", identity=AIRFLOW, audit=audit
    ) as conn:
        frame = conn.query_df(
            "SELECT c.id, c.nome, c.cpf, c.cidade, o.total FROM customers c JOIN orders o ON o.customer_id = c.id"
        )
        summary = conn.query_df(
            "SELECT cidade, count(*) AS clientes FROM customers GROUP BY cidade"
        )
    with connect(
        source, policy=policy, scope="customer_report.load", identity=AIRFLOW_LOAD, audit=audit
    ) as conn:
        conn.executemany(
            "INSERT INTO customer_summary (cidade, clientes, receita) VALUES (?, ?, ?)",
            [(r.cidade, int(r.clientes), 0.0) for r in summary.itertuples()],
        )
    write_report(
        frame,
        (bucket_dir / "customer_report" / "2025-01.csv").as_uri(),
        identity=AIRFLOW_LOAD,
        audit=audit,
        policy=policy,
        scope="customer_report.load",
    )
    with connect(source, policy=policy, scope="support.fix", identity=DAGSTER, audit=audit) as conn:
        conn.execute(
            "UPDATE customers SET email = ? WHERE cpf = ?", ("novo@example.org", planted["cpf"])
        )
        conn.execute(
            "UPDATE customers SET email = ? WHERE id = ?", ("x@example.org", planted["id"] + 1)
        )
    with connect(
        source, policy=policy, scope="customer_report.extract", identity=OTHER, audit=audit
    ) as conn:
        # orders of other customers only: must not name the planted person
        conn.execute(
            "SELECT customer_id, total FROM orders WHERE customer_id > ?", (planted["id"],)
        ).fetchall()


def test_subject_report_finds_exactly_the_tasks_that_touched_the_person(
    source: str, audit_url: str, policy: Policy, people: list[dict[str, Any]], tmp_path: Path
) -> None:
    planted = people[4]
    _pipelines(source, audit_url, policy, planted, tmp_path / "bucket")
    store = AuditStore.from_url(audit_url)
    report = subject_report(store, planted["cpf"], policy=policy)
    touched = [(a["principal"], a["action"]) for a in report["accesses"]]
    assert touched == [
        ("airflow:customer_report.extract", "read"),
        ("dagster:support_job.fix_email", "changed"),
    ]
    read, changed = report["accesses"]
    assert read["purpose"] == "customer_report"
    assert read["legal_basis"] == "legitimate_interest"
    assert read["columns_read"]["main.customers"] == ["cidade", "cpf", "id", "nome"]
    assert read["run_id"] == "scheduled__2025-01-01"
    assert changed["columns_written"] == {"main.customers": ["email"]}
    assert changed["purpose"] == "support"
    destinations = {d["destination"] for d in read["went_next"]}
    assert "table main.customer_summary" not in destinations
    assert "main.customer_summary" in destinations
    assert (tmp_path / "bucket" / "customer_report" / "2025-01.csv").as_uri() in destinations
    # the aggregate over customers could not be attributed and is listed as such
    assert any("GROUP BY" in u["statement"] for u in report["unattributed"])
    # written unformatted, the same CPF finds the same person
    digits = re.sub(r"[^0-9]", "", planted["cpf"])
    assert subject_report(store, digits, policy=policy)["accesses"] == report["accesses"]
    # someone who was only read by the extract
    bystander = subject_report(store, people[20]["cpf"], policy=policy)
    assert [a["principal"] for a in bystander["accesses"]] == [
        "airflow:customer_report.extract",
        "dagster:customer_report_assets.high_value",
    ]
    for fmt in ("json", "md", "html"):
        assert main_output(
            ["report", "subject", "--audit", audit_url, "--policy", policy.source, "--format", fmt],
            planted["cpf"],
        )


def main_output(argv: list[str], stdin: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "lgpd_tasks.cli", *argv],
        input=stdin + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_subject_report_never_holds_the_raw_identifier(
    source: str, audit_url: str, policy: Policy, people: list[dict[str, Any]], tmp_path: Path
) -> None:
    planted = people[4]
    _pipelines(source, audit_url, policy, planted, tmp_path / "bucket")
    digits = re.sub(r"[^0-9]", "", planted["cpf"])
    for fmt in ("json", "md", "html"):
        out = main_output(
            ["report", "subject", "--audit", audit_url, "--policy", policy.source, "--format", fmt],
            planted["cpf"],
        )
        assert "customer_report.extract" in out
        for secret in (planted["cpf"], digits, planted["nome"], planted["email"]):
            assert secret not in out
    # nor does the audit store itself
    raw = Path(audit_url.removeprefix("sqlite:///")).read_bytes()
    for secret in (planted["cpf"], digits, planted["nome"]):
        assert secret.encode() not in raw
    bucket = (tmp_path / "bucket" / "customer_report" / "2025-01.csv").read_text()
    assert planted["cpf"] not in bucket
    assert planted["nome"] not in bucket


def test_report_subject_reads_the_identifier_from_stdin_in_process(
    source: str,
    audit_url: str,
    policy: Policy,
    people: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    _pipelines(source, audit_url, policy, people[4], tmp_path / "bucket")
    monkeypatch.setattr("sys.stdin", io.StringIO(people[4]["cpf"] + "\n"))
    assert (
        main(
            [
                "report",
                "subject",
                "--audit",
                audit_url,
                "--policy",
                policy.source,
                "--format",
                "json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["tasks"] == ["airflow:customer_report.extract", "dagster:support_job.fix_email"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["report", "subject", "--audit", audit_url]) == 2


def test_trail_coverage_and_compact_digests(
    source: str, audit_url: str, policy: Policy, people: list[dict[str, Any]], tmp_path: Path
) -> None:
    _pipelines(source, audit_url, policy, people[4], tmp_path / "bucket")
    store = AuditStore.from_url(audit_url)
    coverage = sorted(access_coverage(store).values())
    assert ("main.customers", "none") in coverage  # the GROUP BY
    assert ("main.customers", "where") in coverage  # the UPDATEs
    assert ("main.customers,main.orders", "rows") in coverage
    with sqlite3.connect(audit_url.removeprefix("sqlite:///")) as raw:
        blocks = raw.execute("SELECT count, length(digests) FROM lgpd_subject_digests").fetchall()
        assert blocks
        assert all(length == 16 * count for count, length in blocks)
        # one 32-byte link (primary-key digest, subject digest) per customer, written once
        links = "SELECT sum(count), sum(length(links)) FROM lgpd_subject_link_blocks"
        assert raw.execute(links).fetchone() == (40, 40 * 32)


def test_insert_values_and_returning_are_traced(
    audit_url: str, policy: Policy, tmp_path: Path
) -> None:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, nome TEXT, cpf TEXT, email TEXT, cidade TEXT)"
        )
    fake = Faker("pt_BR")
    cpf = fake.cpf()
    spec = POLICY.replace("write: {customers: [email]}", 'write: {customers: "*"}').replace(
        "read: {customers: [id, cpf, email]}", 'read: {customers: "*"}'
    )
    pol = parse_policy(spec)
    with connect(
        f"sqlite:///{path}", policy=pol, scope="support.fix", identity=DAGSTER, audit=audit_url
    ) as conn:
        conn.execute(
            "INSERT INTO customers (nome, cpf, email) VALUES (?, ?, ?)",
            (fake.name(), cpf, fake.email()),
        )
        rows = conn.execute("DELETE FROM customers WHERE cidade IS NULL RETURNING cpf").fetchall()
    assert len(rows) == 1
    assert rows[0][0] != cpf
    store = AuditStore.from_url(audit_url)
    trail = SubjectTrail.from_policy(pol, store)
    assert trail is not None
    kinds = sorted(
        e.details["statements"][0]["kind"]
        for e in store.entries()
        if e.record_id in trail.accesses_of(cpf)
    )
    assert kinds == ["delete", "insert"]


def test_ropa_from_policy_and_audit(
    source: str,
    audit_url: str,
    policy: Policy,
    people: list[dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _pipelines(source, audit_url, policy, people[4], tmp_path / "bucket")
    with (
        pytest.raises(Exception, match="blocked"),
        connect(
            source, policy=policy, scope="support.fix", identity=DAGSTER, audit=audit_url
        ) as conn,
    ):
        conn.execute("SELECT nome FROM customers")
    report = ropa_report(AuditStore.from_url(audit_url), policy)
    by_purpose = {p["purpose"]: p for p in report["purposes"]}
    cr = by_purpose["customer_report"]
    assert cr["legal_basis"] == "legitimate_interest"
    assert cr["retention"] == "180d"
    assert cr["data_subjects"] == ["customers"]
    assert {"cpf", "name"} <= set(cr["personal_data"])
    assert {"main.customers", "main.orders"} <= set(cr["sources"])
    bucket_file = (tmp_path / "bucket" / "customer_report" / "2025-01.csv").as_uri()
    assert bucket_file in cr["destinations"]
    assert "table main.customer_summary" in cr["destinations"]
    assert cr["counts"]["runs"] == 2
    assert cr["counts"]["tasks"] == 3
    assert cr["security_measures"]["masking steps between tasks"] == 1
    support = by_purpose["support"]
    assert support["security_measures"]["blocked statements"] == 1
    assert support["retention"] == "5y"
    assert (
        main(
            ["report", "ropa", "--audit", audit_url, "--policy", policy.source, "--format", "html"]
        )
        == 0
    )
    page = capsys.readouterr().out
    svg = page[page.index("<svg") : page.index("</svg>") + 6]
    assert "main.customers" in svg
    assert "customer_report.extract" in svg
    assert bucket_file[-20:] in svg
    assert svg.count("<path") >= 4
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert (
        main(["report", "ropa", "--audit", audit_url, "--policy", policy.source, "--format", "csv"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("purpose,description,legal_basis")
    assert len(lines) == 3
    assert (
        main(
            [
                "report",
                "ropa",
                "--audit",
                audit_url,
                "--policy",
                policy.source,
                "--since",
                "2999-01-01",
            ]
        )
        == 0
    )
    assert "none in the period" in capsys.readouterr().out


def test_write_report_to_s3_records_the_bucket(
    s3: Any, s3_endpoint: str, audit_url: str, policy: Policy, people: list[dict[str, Any]]
) -> None:
    s3.create_bucket(Bucket="reporting")
    frame = pd.DataFrame(people[:5])
    stored = write_report(
        frame,
        "s3://reporting/monthly/2025-01.parquet",
        identity=AIRFLOW_LOAD,
        audit=audit_url,
        policy=policy,
        scope="customer_report.load",
        endpoint_url=s3_endpoint,
    )
    assert stored.url == "s3://reporting/monthly/2025-01.parquet"
    import io

    back = pd.read_parquet(
        io.BytesIO(s3.get_object(Bucket="reporting", Key="monthly/2025-01.parquet")["Body"].read())
    )
    assert not set(back["cpf"]) & {p["cpf"] for p in people}
    entry = AuditStore.from_url(audit_url).entries()[-1]
    assert entry.kind == "masking"
    assert entry.details["destination"] == stored.url
    assert entry.purpose == "customer_report"
