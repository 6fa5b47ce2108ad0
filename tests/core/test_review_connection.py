"""GuardedConnection fails closed and loses nothing: approvals, outcomes, refusals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from faker import Faker

from lgpd_tasks.approvals import ApprovalStore, Approver
from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.connection import GuardedConnection, connect
from lgpd_tasks.errors import ApprovalRequired, StatementFailed
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, parse_policy

POLICY = """\
version: 1
dialect: sqlite
purposes:
  report: {legal_basis: legitimate_interest, retention: 30d}
scopes:
  extract:
    purpose: report
    read:
      customers: [id, nome, cpf, cidade]
    require_approval: [pii_read]
  purge:
    purpose: report
    read:
      customers: [id, cidade]
    write:
      customers: "*"
masking:
  columns: {cpf: hmac, nome: redact}
"""

WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)


@pytest.fixture(autouse=True)
def _masking_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret-0123")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    fake = Faker("pt_BR")
    Faker.seed(5)
    path = tmp_path / "source.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER, nome TEXT, cpf TEXT, cidade TEXT)")
    db.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?)",
        [(i, fake.name(), fake.cpf(), fake.city()) for i in range(1, 11)],
    )
    db.commit()
    db.close()
    return path


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY, "policy.yaml")


def _open(
    source: Path, policy: Policy, audit: AuditStore, scope: str = "extract"
) -> GuardedConnection:
    return connect(f"sqlite:///{source}", policy=policy, scope=scope, identity=WHO, audit=audit)


def _approved(
    source: Path, policy: Policy, audit: AuditStore, sql: str, scope: str = "extract"
) -> str:
    with _open(source, policy, audit, scope) as conn, pytest.raises(ApprovalRequired) as info:
        conn.execute(sql)
    ApprovalStore(audit).approve(info.value.request_id, Approver("joao"), "monthly report")
    return info.value.request_id


def test_one_approval_admits_one_run_even_before_the_first_is_fetched(
    source: Path, policy: Policy, audit: AuditStore
) -> None:
    sql = "SELECT id, cpf FROM customers"
    request_id = _approved(source, policy, audit, sql)
    with _open(source, policy, audit) as conn, _open(source, policy, audit) as other:
        first = conn.execute(sql)  # admitted, not yet fetched
        with pytest.raises(ApprovalRequired) as info:
            other.execute(sql)
        assert info.value.request_id != request_id
        assert len(first.fetchall()) == 10
    ran = audit.records(EntryFilter(kind="statement", decision="approved"))
    assert [r.entry.details["approval_id"] for r in ran] == [request_id]


def test_a_failed_approved_statement_keeps_its_approval(
    source: Path, policy: Policy, audit: AuditStore
) -> None:
    sql = "DELETE FROM customers"
    request_id = _approved(source, policy, audit, sql, scope="purge")
    db = sqlite3.connect(source)
    db.execute(
        "CREATE TRIGGER no_delete BEFORE DELETE ON customers BEGIN SELECT RAISE(ABORT, 'kept'); END"
    )
    db.commit()
    with _open(source, policy, audit, "purge") as conn, pytest.raises(StatementFailed):
        conn.execute(sql)
    assert ApprovalStore(audit).get(request_id).usable
    db.execute("DROP TRIGGER no_delete")
    db.commit()
    with _open(source, policy, audit, "purge") as conn:
        assert conn.execute(sql).rowcount == 10
    assert not ApprovalStore(audit).get(request_id).usable


def test_a_result_never_fetched_to_its_end_still_gets_its_outcome(
    source: Path, policy: Policy, audit: AuditStore
) -> None:
    scope = policy.scope("extract").narrow(read={"customers": ["id", "cidade"]})
    with connect(
        f"sqlite:///{source}", policy=policy, scope=scope, identity=WHO, audit=audit
    ) as conn:
        assert conn.execute("SELECT id, cidade FROM customers").fetchone() is not None
        cur = conn.execute("SELECT id FROM customers")
        cur.fetchmany(3)
    (first, second) = audit.records(EntryFilter(kind="statement"))
    assert (first.status, first.rows) == ("ok", 1)
    assert (second.status, second.rows) == ("ok", 3)
    cur.close()  # closing the cursor later writes no second outcome
    assert len(audit.entries(EntryFilter(kind="outcome"))) == 2
    assert audit.verify().ok
