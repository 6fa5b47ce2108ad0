"""``lgpd-tasks check``: JSON decision on stdout and the contract's exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lgpd_tasks.cli import main

POLICY = str(Path(__file__).parent.parent / "fixtures" / "policy.yaml")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["check", "--policy", POLICY, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_allow_prints_the_decision(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "--scope",
        "customer_report.extract",
        "--sql",
        "SELECT nome FROM crm.customers WHERE cpf = '123.456.789-09'",
    )
    assert code == 0
    decision = json.loads(out)
    assert decision["action"] == "allow"
    assert decision["reasons"] == []
    [statement] = decision["statements"]
    assert statement["kind"] == "select"
    assert statement["tables_read"] == ["crm.customers"]
    assert statement["columns_read"] == {"crm.customers": ["cpf", "nome"]}
    assert statement["lineage"] == [{"target": "nome", "sources": ["crm.customers.nome"]}]
    assert decision["normalized"] == "SELECT nome FROM crm.customers WHERE cpf = ?"
    assert len(decision["fingerprint"]) == 64
    assert "123.456.789-09" not in out


def test_check_block_names_the_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, "--scope", "customer_report.extract", "--sql", "SELECT token FROM crm.secrets"
    )
    assert code == 4
    decision = json.loads(out)
    assert decision["action"] == "block"
    assert decision["reasons"][0]["rule"] == "read_scope"
    assert decision["reasons"][0]["table"] == "crm.secrets"


def test_check_approve_reads_sql_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("DELETE FROM staging.orders_raw WHERE 1=1"))
    code, out, _ = _run(capsys, "--scope", "customer_report.purge", "-")
    assert code == 3
    assert json.loads(out)["reasons"][0]["rule"] == "unbounded_write"


def test_check_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--scope", "customer_report.extract")
    assert code == 2
    assert "--sql" in err
    code, _, err = _run(capsys, "--scope", "no.such.scope", "--sql", "SELECT 1")
    assert code == 2
    assert "no.such.scope" in err
    code, _, err = _run(
        capsys, "--scope", "customer_report.extract", "--dialect", "klingon", "--sql", "SELECT 1"
    )
    assert code == 2
    assert "klingon" in err


def test_check_missing_policy_file_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["check", "--policy", str(tmp_path / "none.yaml"), "--scope", "x", "--sql", "1"])
    assert code == 2
    assert "none.yaml" in capsys.readouterr().err


def test_check_policy_file_not_utf8_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_bytes(b"\xff\xfeversion: 1\n")
    code = main(["check", "--policy", str(policy), "--scope", "s", "--sql", "SELECT 1"])
    assert code == 2
    assert capsys.readouterr().err == (
        f"lgpd-tasks: {policy}: line 1: not UTF-8 text (byte 0xff): save the policy file as UTF-8\n"
    )


def test_check_refuses_a_broken_masking_section_naming_every_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "q.yaml"
    policy.write_text(
        "version: 1\n"
        "dialect: sqlite\n"
        "purposes:\n"
        "  report: {legal_basis: consent, retention: 30d}\n"
        "scopes:\n"
        "  s: {purpose: reportt, read: {customers: [id]}}\n"
        "masking:\n"
        "  columns: {cpf: hmacc, telefone: {strategy: partial, keep_last: many}}\n"
        "  types: {phone: bogus}\n"
    )
    code = main(["check", "--policy", str(policy), "--scope", "s", "--sql", "SELECT id FROM t"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    known = "(known: drop, generalize, hmac, null, partial, redact)"
    assert err.splitlines() == [
        "lgpd-tasks: invalid policy:",
        f"{policy}: masking.columns.cpf: unknown strategy 'hmacc' {known}",
        f"{policy}: masking.columns.telefone: strategy 'partial', keep_last: Input should be "
        "a valid integer, unable to parse string as an integer",
        f"{policy}: masking.types.phone: unknown strategy 'bogus' {known}",
        f"{policy}: scopes.s.purpose: unknown purpose 'reportt' (expected one of: report)",
    ]


def test_console_script_check_blocks_ddl() -> None:
    script = Path(sys.executable).parent / "lgpd-tasks"
    result = subprocess.run(
        [str(script), "check", "--policy", POLICY, "--scope", "customer_report.load", "-"],
        input="DROP TABLE reporting.customer_summary",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 4, result.stderr
    assert json.loads(result.stdout)["reasons"][0]["rule"] == "ddl"


def test_check_prints_no_value_written_in_double_quotes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A value in the wrong quotes parses as a column name; the output still holds no value."""
    code, out, _ = _run(
        capsys,
        "--scope",
        "customer_report.extract",
        "--sql",
        'SELECT nome FROM crm.customers WHERE cpf = "529.982.247-25" OR email = "ana@exemplo.com"',
    )
    assert code == 4
    decision = json.loads(out)
    assert "529.982.247-25" not in out
    assert "ana@exemplo.com" not in out
    assert decision["normalized"] == 'SELECT nome FROM crm.customers WHERE cpf = "?" OR email = "?"'
    assert {r["rule"] for r in decision["reasons"]} == {"read_scope"}
    assert all(r["column"] == "?" for r in decision["reasons"])
    assert "string values take single quotes" in decision["reasons"][0]["message"]


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    """``lgpd-tasks ... | head`` ends quietly, as cat does, when the reader goes away."""
    columns = ", ".join(f"c{i}" for i in range(3000))  # a decision far larger than a pipe
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "lgpd-tasks"),
            "check",
            "--policy",
            POLICY,
            "--scope",
            "customer_report.extract",
            "--sql",
            f"SELECT {columns} FROM crm.customers",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err
    assert err == ""
