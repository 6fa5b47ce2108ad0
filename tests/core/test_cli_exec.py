"""`lgpd-tasks exec`, `db init` and `approvals`: the exit-code contract and masked output."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from faker import Faker

from lgpd_tasks.audit.schema import SCHEMA_VERSION
from lgpd_tasks.cli import main

POLICY = Path(__file__).parents[2] / "examples" / "core" / "policy.yaml"


@pytest.fixture
def urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("LGPD_MASKING_KEY", "cli-test-key-0123456789")
    fake = Faker("pt_BR")
    Faker.seed(11)
    db = sqlite3.connect(tmp_path / "source.db")
    db.execute(
        "CREATE TABLE customers (id INTEGER, nome TEXT, cpf TEXT, email TEXT, telefone TEXT, "
        "cidade TEXT, renda REAL, created_at TEXT)"
    )
    db.execute("CREATE TABLE staging_orders (id INTEGER, created_at TEXT)")
    db.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, 1.0, '2024-01-01')",
        [
            (i, fake.name(), fake.cpf(), fake.email(), fake.phone_number(), fake.city())
            for i in range(5)
        ],
    )
    db.executemany("INSERT INTO staging_orders VALUES (?, '2024-01-01')", [(i,) for i in range(7)])
    db.commit()
    raw = db.execute("SELECT cpf, email FROM customers").fetchall()
    db.close()
    return {
        "db": f"sqlite:///{tmp_path}/source.db",
        "audit": f"sqlite:///{tmp_path}/audit.db",
        "raw": json.dumps(raw),
    }


def _exec(urls: dict[str, str], scope: str, sql: str, *extra: str) -> int:
    return main(
        [
            "exec",
            "--policy",
            str(POLICY),
            "--scope",
            scope,
            "--db",
            urls["db"],
            "--audit",
            urls["audit"],
            "--as",
            "ana",
            *extra,
            "--sql",
            sql,
        ]
    )


def test_exec_prints_masked_json_and_exits_zero(
    urls: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = _exec(
        urls, "customer_report.extract", "SELECT id, cpf, email FROM customers", "--format", "json"
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 5
    for cpf, email in json.loads(urls["raw"]):
        assert cpf not in out
        assert email not in out


@pytest.mark.parametrize(
    ("scope", "sql", "code"),
    [
        pytest.param(
            "customer_report.extract", "SELECT renda FROM customers", 4, id="blocked-column"
        ),
        pytest.param("customer_report.purge", "DROP TABLE staging_orders", 4, id="blocked-ddl"),
        pytest.param("customer_report.purge", "DELETE FROM staging_orders", 3, id="needs-approval"),
        pytest.param("customer_report.purge", "SELECT nope FROM", 4, id="unparsable"),
        pytest.param("no.such.scope", "SELECT 1", 2, id="unknown-scope"),
        pytest.param(
            "customer_report.purge",
            "INSERT INTO staging_orders (id) VALUES (1, 2)",
            1,
            id="database-error",
        ),
    ],
)
def test_exec_exit_codes(
    urls: dict[str, str], scope: str, sql: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exec(urls, scope, sql) == code
    assert "lgpd-tasks:" in capsys.readouterr().err


def test_approve_then_exec_runs_and_audit_verifies(
    urls: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exec(urls, "customer_report.purge", "DELETE FROM staging_orders") == 3
    err = capsys.readouterr().err
    request_id = next(w for w in err.split() if w.startswith("apr_"))
    assert main(["approvals", "list", "--db", urls["audit"], "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [request_id]
    assert main(["approvals", "approve", request_id, "--db", urls["audit"], "--as", "ana"]) == 1
    assert "cannot decide" in capsys.readouterr().err
    assert main(["approvals", "approve", request_id, "--db", urls["audit"], "--as", "dpo"]) == 0
    assert _exec(urls, "customer_report.purge", "DELETE FROM staging_orders") == 0
    assert "7 row(s) affected" in capsys.readouterr().out
    assert main(["audit", "tail", "--db", urls["audit"], "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["status"]) for r in records] == [
        ("approval", "requested"),
        ("statement", "approval pending"),
        ("approval", "approve"),
        ("statement", "ok"),
    ]
    assert main(["audit", "verify", "--db", urls["audit"]]) == 0


def test_exec_reads_sql_from_stdin_and_runs_each_statement(
    urls: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr(
        "sys.stdin", io.StringIO("SELECT id FROM customers; SELECT id FROM customers")
    )
    code = main(
        [
            "exec",
            "--policy",
            str(POLICY),
            "--scope",
            "customer_report.extract",
            "--db",
            urls["db"],
            "--audit",
            urls["audit"],
            "--format",
            "csv",
            "-",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.count("id\r\n") == 2


def test_console_script_runs_in_a_subprocess(urls: dict[str, str]) -> None:
    exe = Path(sys.executable).parent / "lgpd-tasks"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "lgpd_tasks.cli"]
    done = subprocess.run(
        [*command, "db", "init", "--db", urls["audit"]],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"schema version {SCHEMA_VERSION}" in done.stdout


@pytest.mark.parametrize(
    "audit",
    ["sqlite://", "sqlite:///:memory:", "sqlite:///file:audit?mode=memory&uri=true"],
)
def test_exec_refuses_an_in_memory_audit_store_and_runs_nothing(
    urls: dict[str, str], audit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    insert = "INSERT INTO staging_orders (id, created_at) VALUES (99, '2024-02-01')"
    assert _exec({**urls, "audit": audit}, "customer_report.purge", insert) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lgpd-tasks: audit store {audit} is an in-memory SQLite database")
    source = sqlite3.connect(urls["db"].removeprefix("sqlite:///"))
    assert source.execute("SELECT count(*) FROM staging_orders").fetchone() == (7,)
    source.close()
    # the same statement with the audit in a file runs, and its record stays
    assert _exec(urls, "customer_report.purge", insert) == 0
    assert main(["audit", "tail", "--db", urls["audit"], "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert [(r["kind"], r["status"]) for r in records] == [("statement", "ok")]


def test_exec_prints_result_labels_without_their_literals(
    urls: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cpf, email = json.loads(urls["raw"])[0]
    sql = f"SELECT id, cpf = '{cpf}', coalesce(email, '{email}') FROM customers"
    for fmt in ("csv", "table", "json"):
        assert _exec(urls, "customer_report.extract", sql, "--format", fmt) == 0
        out = capsys.readouterr().out
        assert cpf not in out
        assert email not in out
        if fmt == "csv":
            assert out.splitlines()[0] == 'id,cpf = ?,"coalesce(email, ?)"'
        if fmt == "json":
            assert list(json.loads(out)[0]) == ["id", "cpf = ?", "coalesce(email, ?)"]
    audit = (tmp_path / "audit.db").read_bytes()
    assert cpf.encode() not in audit
    assert email.encode() not in audit


def test_exec_reports_a_failure_while_fetching_as_a_database_error(
    urls: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # SQLite computes rows as they are fetched: json() fails on the second row, after execute
    sql = "SELECT id, CASE WHEN id > 0 THEN json(nome) END FROM customers"
    assert _exec(urls, "customer_report.extract", sql, "--format", "csv") == 1
    captured = capsys.readouterr()
    assert captured.err == (
        "lgpd-tasks: database failed the statement while its rows were fetched "
        "(OperationalError): malformed JSON\n"
    )
    assert captured.out == ""
    assert main(["audit", "tail", "--db", urls["audit"], "--format", "json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["status"] == "error"
