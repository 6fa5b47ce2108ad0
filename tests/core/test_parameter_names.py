"""Named-parameter keys reach the audit masked: a key may itself be a personal value."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.connection import connect
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import parse_policy

POLICY = """\
version: 1
dialect: sqlite
purposes:
  report: {legal_basis: legitimate_interest, retention: 180d}
scopes:
  extract:
    purpose: report
    read:
      customers: [id, cpf]
masking:
  columns: {cpf: hmac}
  key_env: LGPD_MASKING_KEY
"""


@pytest.mark.parametrize("mask_results", [True, False])
def test_named_parameter_keys_are_masked_in_the_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mask_results: bool
) -> None:
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret")
    path = tmp_path / "source.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER, cpf TEXT)")
    db.execute("INSERT INTO customers VALUES (1, '529.982.247-25')")
    db.commit()
    db.close()
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    who = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1")
    with connect(
        f"sqlite:///{path}",
        policy=parse_policy(POLICY),
        scope="extract",
        identity=who,
        audit=audit,
        mask_results=mask_results,
    ) as conn:
        rows = conn.execute(
            "SELECT id FROM customers WHERE cpf = :cpf",
            {"cpf": "529.982.247-25", "maria.souza@gmail.com": 1, "52998224725": 2},
        ).fetchall()
    assert rows == [(1,)]
    (record,) = audit.records(EntryFilter(kind="statement"))
    named = record.entry.details["parameters"]["named"]
    assert "cpf" in named
    assert len(named) == 3
    text = str(record.to_dict())
    assert "maria.souza" not in text
    assert "52998224725" not in text
    assert "529.982.247-25" not in text
