"""write_report's labels and destination, the RoPA period in UTC, reads by primary key only."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from lgpd_tasks.audit import AuditStore, NewEntry
from lgpd_tasks.cli import main
from lgpd_tasks.connection import connect
from lgpd_tasks.evidence.destinations import write_report
from lgpd_tasks.evidence.reports import render_subject, ropa_report, subject_report
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, parse_policy

POLICY = """
version: 1
dialect: sqlite
purposes:
  customer_report:
    legal_basis: legitimate_interest
    retention: 180d
    data_subjects: [customers]
scopes:
  customer_report.extract:
    purpose: customer_report
    read: {customers: [id, nome, cpf, cidade]}
subjects:
  customers: {key: cpf, primary_key: id, category: customers}
masking:
  columns: {cpf: hmac, nome: redact}
"""

MARIA = ("529.982.247-25", "maria.souza@gmail.com")
WHO = TaskIdentity("airflow", "customer_report", "extract", run_id="manual__1")


@pytest.fixture
def policy(masking_key: str, tmp_path: Path) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return parse_policy(POLICY, str(path))


@pytest.fixture
def source(tmp_path: Path) -> str:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, nome TEXT, cpf TEXT, cidade TEXT)"
        )
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?)",
            [(1, "Maria Souza", MARIA[0], "Recife"), (2, "Joao Lima", "111.444.777-35", "Natal")],
        )
    return f"sqlite:///{path}"


def test_write_report_masks_column_labels_and_the_recorded_destination(
    tmp_path: Path, audit_url: str, policy: Policy
) -> None:
    frame = pd.DataFrame({MARIA[1]: [10.0], MARIA[0]: [3.0], "cidade": ["Recife"]})
    url = (tmp_path / "out" / f"relatorio-{MARIA[0]}.csv").as_uri()
    (tmp_path / "out").mkdir()
    stored = write_report(
        frame,
        url,
        identity=WHO,
        audit=audit_url,
        policy=policy,
        scope="customer_report.extract",
    )
    written = Path(stored.url.removeprefix("file://")).read_text()
    assert written.splitlines()[0] == "[EMAIL],[CPF],cidade"
    store = AuditStore.from_url(audit_url)
    (entry,) = store.entries()
    text = json.dumps(entry.details)
    assert MARIA[0] not in text
    assert MARIA[0].replace(".", "").replace("-", "") not in text
    assert entry.details["destination"].endswith("relatorio-[CPF].csv")
    assert entry.details["lineage"][0]["target"] == entry.details["destination"]


def test_an_old_raw_destination_is_scrubbed_in_the_reports(
    source: str, audit_url: str, policy: Policy, tmp_path: Path
) -> None:
    with connect(
        source, policy=policy, scope="customer_report.extract", identity=WHO, audit=audit_url
    ) as conn:
        conn.execute("SELECT id, cpf FROM customers").fetchall()
    store = AuditStore.from_url(audit_url)
    # a record written before record_masking scrubbed what it is given
    store.append(
        NewEntry(
            kind="masking",
            identity=WHO,
            scope="customer_report.extract",
            purpose="customer_report",
            decision="masked",
            details={"event": "masked", "source": "x", "destination": f"s3://b/{MARIA[1]}/r.csv"},
        )
    )
    report = subject_report(store, MARIA[0], policy=policy)
    (access,) = report["accesses"]
    assert access["went_next"][0]["destination"] == "s3://b/[EMAIL]/r.csv"
    ropa = ropa_report(store, policy)
    assert MARIA[1] not in json.dumps(ropa, default=str)


def test_ropa_period_compares_in_utc(source: str, audit_url: str, policy: Policy) -> None:
    with connect(
        source, policy=policy, scope="customer_report.extract", identity=WHO, audit=audit_url
    ) as conn:
        conn.execute("SELECT id FROM customers").fetchall()
    store = AuditStore.from_url(audit_url)
    brasilia = timezone(timedelta(hours=-3))
    later = datetime.now(UTC) + timedelta(minutes=10)
    for since in (later, later.astimezone(brasilia)):
        counts = ropa_report(store, policy, since=since)["purposes"][0]["counts"]
        assert counts.get("runs", 0) == 0, since
    earlier = (datetime.now(UTC) - timedelta(minutes=10)).astimezone(brasilia)
    counts = ropa_report(store, policy, since=earlier)["purposes"][0]["counts"]
    assert counts["runs"] == 1


def test_ropa_cli_since_with_an_offset(
    source: str, audit_url: str, policy: Policy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(
        source, policy=policy, scope="customer_report.extract", identity=WHO, audit=audit_url
    ) as conn:
        conn.execute("SELECT id FROM customers").fetchall()
    since = (datetime.now(UTC) + timedelta(minutes=10)).astimezone(timezone(timedelta(hours=-3)))
    argv = ["report", "ropa", "--audit", audit_url, "--policy", str(tmp_path / "policy.yaml")]
    assert main([*argv, "--format", "json", "--since", since.isoformat()]) == 0
    counts = json.loads(capsys.readouterr().out)["purposes"][0]["counts"]
    assert counts.get("runs", 0) == 0


def test_a_read_by_primary_key_only_is_unattributed_until_linked(
    source: str, audit_url: str, policy: Policy
) -> None:
    def run(sql: str) -> None:
        with connect(
            source, policy=policy, scope="customer_report.extract", identity=WHO, audit=audit_url
        ) as conn:
            conn.execute(sql).fetchall()

    run("SELECT id, cidade FROM customers WHERE id = 1")
    store = AuditStore.from_url(audit_url)
    report = subject_report(store, MARIA[0], policy=policy)
    assert report["accesses"] == []
    (unknown,) = report["unattributed"]
    assert unknown["why"] == "primary key without subject key"
    assert "primary key without subject key" in render_subject(report, "md")
    # once a statement sees id 1 with its CPF, the read is Maria's, and nobody else's
    run("SELECT id, cpf FROM customers")
    report = subject_report(store, MARIA[0], policy=policy)
    assert len(report["accesses"]) == 2
    assert report["unattributed"] == []
    other = subject_report(store, "111.444.777-35", policy=policy)
    assert len(other["accesses"]) == 1
    assert other["unattributed"] == []
