"""First checks of the guard's public API: the decision shape and the CLI exit codes."""

from __future__ import annotations

from pathlib import Path

from lgpd_tasks.cli import main
from lgpd_tasks.policy import load_policy
from lgpd_tasks.sql import check

POLICY = Path(__file__).parent.parent / "fixtures" / "policy.yaml"


def test_granted_select_is_allowed_with_no_reasons() -> None:
    scope = load_policy(POLICY).scope("customer_report.extract")
    decision = check("SELECT id, nome FROM crm.customers WHERE cpf = '1'", scope)
    assert decision.allowed
    assert decision.reasons == ()
    assert decision.normalized == "SELECT id, nome FROM crm.customers WHERE cpf = ?"


def test_cli_check_exit_codes(capsys: object) -> None:
    base = ["check", "--policy", str(POLICY)]
    assert (
        main([*base, "--scope", "customer_report.extract", "--sql", "SELECT id FROM crm.customers"])
        == 0
    )
    assert (
        main([*base, "--scope", "customer_report.purge", "--sql", "DELETE FROM staging.orders_raw"])
        == 3
    )
    assert (
        main([*base, "--scope", "customer_report.extract", "--sql", "DROP TABLE crm.orders"]) == 4
    )
    assert main([*base, "--scope", "nope", "--sql", "SELECT 1"]) == 2
