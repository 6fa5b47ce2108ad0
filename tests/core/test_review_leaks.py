"""No personal value reaches an exception, the audit file or the CLI's stderr on failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from faker import Faker

from lgpd_tasks.audit import AuditStore
from lgpd_tasks.cli import main
from lgpd_tasks.connection import connect
from lgpd_tasks.errors import StatementFailed
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import parse_policy

WHO = TaskIdentity("airflow", "contractor", "load", run_id="manual__1", attempt=1)

POLICY = """\
version: 1
dialect: postgres
purposes:
  report: {{legal_basis: legitimate_interest, retention: 30d}}
scopes:
  load:
    purpose: report
    read:
      {schema}.customers: [id]
    write:
      {schema}.customers: [id, nome, cpf, cidade]
masking:
  columns: {{cpf: hmac, nome: redact}}
"""


@pytest.fixture(autouse=True)
def _masking_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret-0123")


@pytest.mark.postgres
@pytest.mark.parametrize("mask_results", [True, False])
def test_database_errors_quote_no_value(
    pg_schema: str, postgres_dsn: str, tmp_path: Path, mask_results: bool
) -> None:
    import psycopg

    fake = Faker("pt_BR")
    Faker.seed(23)
    nome, cpf, cidade = fake.name(), fake.cpf(), fake.city()
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {pg_schema}.customers "
            "(id int NOT NULL, nome text, cpf text UNIQUE, cidade text)"
        )
        admin.execute(
            f"INSERT INTO {pg_schema}.customers VALUES (1, %s, %s, %s)", (nome, cpf, cidade)
        )
    policy = parse_policy(POLICY.format(schema=pg_schema), "policy.yaml")
    audit_path = tmp_path / "audit.db"
    audit = AuditStore.from_url(f"sqlite:///{audit_path}")
    messages: list[str] = []
    with connect(
        postgres_dsn,
        policy=policy,
        scope="load",
        identity=WHO,
        audit=audit,
        mask_results=mask_results,
    ) as conn:
        table = f"{pg_schema}.customers"
        for sql, params in [
            (f"INSERT INTO {table} (id, cpf) VALUES (2, %s)", (cpf,)),  # Key (cpf)=(...)
            (f"INSERT INTO {table} (nome, cidade) VALUES (%s, %s)", (nome, cidade)),  # row
            (f"UPDATE {table} SET cidade = 'x' WHERE id = %s", (nome,)),  # bad integer
        ]:
            with pytest.raises(StatementFailed) as info:
                conn.execute(sql, params)
            messages.append(str(info.value))
            conn.rollback()
    text = "\n".join(messages)
    assert "unique constraint" in text
    assert "not-null" in text
    assert "customers_cpf_key" in text
    assert '"id"' in text
    raw = audit_path.read_bytes()
    for value in (nome, cpf, cidade, *nome.split()):
        if len(value) > 3:
            assert value not in text
            assert value.encode() not in raw


@pytest.mark.postgres
def test_cli_exec_failure_prints_no_value(
    pg_schema: str, postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    nome = Faker("pt_BR").name()
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {pg_schema}.customers (id int, nome text, cpf text, cidade text)"
        )
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY.format(schema=pg_schema))
    code = main(
        [
            "exec",
            "--policy", str(policy_file),
            "--scope", "load",
            "--db", postgres_dsn,
            "--audit", f"sqlite:///{tmp_path}/audit.db",
            "--sql", f"UPDATE {pg_schema}.customers SET cidade = 'x' WHERE id = '{nome}'",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "invalid input syntax" in err
    assert nome not in err
