"""An approval admits the statement with the values it was asked for, not others.

The request shows the statement without its values (``?``), so the approver approves what
they were told: a run whose literal values or parameters changed since (an upstream task, a
Variable) must ask again.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from faker import Faker

from lgpd_tasks.approvals import ApprovalStore, Approver, Status
from lgpd_tasks.approvals.values import admits, bind, statement_values
from lgpd_tasks.audit import AuditStore
from lgpd_tasks.connection import connect
from lgpd_tasks.errors import ApprovalRequired
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, parse_policy

POLICY = """\
version: 1
dialect: sqlite
purposes:
  customer_report:
    legal_basis: legitimate_interest
    retention: 180d
scopes:
  purge:
    purpose: customer_report
    read:
      customers: [id, cpf, created_at]
    write:
      customers: "*"
    require_approval: [delete]
"""

WHO = TaskIdentity("airflow", "crm", "purge", run_id="manual__1", user="maria")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[str, Policy, AuditStore, list[str]]:
    fake = Faker("pt_BR")
    Faker.seed(11)
    cpfs = [fake.cpf() for _ in range(10)]
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER, cpf TEXT, created_at TEXT)")
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?)",
            [(i, cpf, f"202{i % 5}-01-01") for i, cpf in enumerate(cpfs)],
        )
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    return f"sqlite:///{path}", parse_policy(POLICY, "policy.yaml"), audit, cpfs


def _run(setup: tuple[str, Policy, AuditStore, list[str]], sql: str, params: object) -> int:
    url, policy, audit, _ = setup
    with connect(url, policy=policy, scope="purge", identity=WHO, audit=audit) as conn:
        return int(conn.execute(sql, params).rowcount)


def _asks(setup: tuple[str, Policy, AuditStore, list[str]], sql: str, params: object) -> str:
    with pytest.raises(ApprovalRequired) as info:
        _run(setup, sql, params)
    return str(info.value.request_id)


def _rows(setup: tuple[str, Policy, AuditStore, list[str]]) -> int:
    with sqlite3.connect(setup[0].removeprefix("sqlite:///")) as db:
        return int(db.execute("SELECT count(*) FROM customers").fetchone()[0])


def test_other_parameters_need_their_own_approval(
    setup: tuple[str, Policy, AuditStore, list[str]],
) -> None:
    sql = "DELETE FROM customers WHERE created_at < ?"
    approvals = ApprovalStore(setup[2])
    asked = _asks(setup, sql, ("2021-06-01",))
    assert _asks(setup, sql, ("2021-06-01",)) == asked  # the same values: the same request
    approvals.approve(asked, Approver("joao"), "two old rows")
    # the cutoff changed before the run: not what was approved
    other = _asks(setup, sql, ("2099-01-01",))
    assert other != asked
    assert _rows(setup) == 10
    assert approvals.get(asked).usable  # still there for the values it was given for
    assert approvals.get(other).status is Status.PENDING
    assert _run(setup, sql, ("2021-06-01",)) == 4
    assert approvals.get(asked).consumed_at is not None


def test_other_literal_values_need_their_own_approval(
    setup: tuple[str, Policy, AuditStore, list[str]],
) -> None:
    approvals = ApprovalStore(setup[2])
    asked = _asks(setup, "DELETE FROM customers WHERE created_at < '2021-06-01'", None)
    approvals.approve(asked, Approver("joao"), "two old rows")
    wider = "DELETE FROM customers WHERE created_at < '2099-01-01'"
    assert _asks(setup, wider, None) != asked
    assert _rows(setup) == 10
    assert "2021" not in approvals.get(asked).normalized  # the approver saw no value


def test_the_stored_binding_gives_no_value_away(
    setup: tuple[str, Policy, AuditStore, list[str]],
) -> None:
    cpf = setup[3][0]
    asked = _asks(setup, "DELETE FROM customers WHERE cpf = ?", (cpf,))
    request = ApprovalStore(setup[2]).get(asked)
    digits = cpf.replace(".", "").replace("-", "")
    assert request.bound_values is not None
    assert cpf not in request.bound_values
    assert digits not in request.bound_values
    assert request.to_dict()["values_bound"] is True
    assert "bound_values" not in repr(request)
    with sqlite3.connect(str(setup[2].url).removeprefix("sqlite:///")) as db:
        stored = "\n".join(
            str(v) for row in db.execute("SELECT * FROM lgpd_approval_requests") for v in row
        )
    assert cpf not in stored
    assert digits not in stored


def test_values_tell_types_and_structure_apart() -> None:
    sql = "DELETE FROM t WHERE a = :a"
    kinds = [{"a": 1}, {"a": "1"}, {"a": Decimal("1")}, {"a": 1.0}, {"a": True}, {"b": 1}, [1]]
    digests = {statement_values(sql, k) for k in kinds}
    assert len(digests) == len(kinds)
    assert statement_values(sql, {}) == statement_values(sql, None) == statement_values(sql, [])
    assert statement_values(sql, {"a": 1, "b": 2}) == statement_values(sql, {"b": 2, "a": 1})
    assert statement_values(sql, [(1,), (2,)], many=True) != statement_values(
        sql, [(1,)], many=True
    )
    bound = bind(statement_values(sql, {"a": 1}))
    assert bind(statement_values(sql, {"a": 1})) != bound  # salted
    assert admits(bound, statement_values(sql, {"a": 1}))
    assert not admits(bound.replace("scrypt", "sha256"), statement_values(sql, {"a": 1}))
    assert not admits("garbage", statement_values(sql, {"a": 1}))


def test_parameters_whose_text_is_abridged_are_told_apart_or_refused() -> None:
    """psycopg's Jsonb and numpy arrays print abridged: two different values must still
    give two digests; a type that cannot be rendered exactly is refused, not guessed."""
    import numpy as np
    from psycopg.types.json import Jsonb

    from lgpd_tasks.errors import ApprovalError

    sql = "DELETE FROM t WHERE id = ANY(%s)"
    ids = list(range(101, 111))
    other = [*ids[:8], 999, 888]
    assert str(Jsonb({"ids": ids})) == str(Jsonb({"ids": other}))  # what fooled a str()
    assert statement_values(sql, [Jsonb({"ids": ids})]) != statement_values(
        sql, [Jsonb({"ids": other})]
    )
    big, changed = np.arange(10_000), np.arange(10_000)
    changed[5_000] = -1
    assert str(big) == str(changed)
    assert statement_values(sql, [big]) != statement_values(sql, [changed])
    with pytest.raises(ApprovalError, match="type set cannot be bound"):
        statement_values(sql, [{101, 102}])
    # a custom dumps decides the text sent: it is not what the digest would have read
    with pytest.raises(ApprovalError, match="type Jsonb cannot be bound"):
        statement_values(sql, [Jsonb({"ids": ids}, dumps=lambda obj: "{}")])


def test_comments_and_layout_do_not_change_the_values() -> None:
    tagged = "DELETE FROM t  WHERE d < '2023-01-01' /* task: purge_approval */"
    assert statement_values(tagged, None, dialect="sqlite") == statement_values(
        "DELETE FROM t WHERE d < '2023-01-01' -- task: purge", None, dialect="sqlite"
    )
    assert statement_values(tagged, None, dialect="sqlite") != statement_values(
        "DELETE FROM t WHERE d < '2023-01-02'", None, dialect="sqlite"
    )


PURGE = "DELETE FROM customers WHERE created_at < ?"


def _approved(setup: tuple[str, Policy, AuditStore, list[str]]) -> str:
    """A request for PURGE with the cutoff 2021-06-01 (4 rows), approved."""
    asked = _asks(setup, PURGE, ("2021-06-01",))
    ApprovalStore(setup[2]).approve(asked, Approver("joao"), "four old rows")
    return asked


def test_an_approval_is_found_among_many_requests_for_other_values(
    setup: tuple[str, Policy, AuditStore, list[str]],
) -> None:
    sql = PURGE
    _approved(setup)
    for day in range(1, 21):  # later runs with other values, each asking for its own
        _asks(setup, sql, (f"2022-01-{day:02d}",))
    assert _run(setup, sql, ("2021-06-01",)) == 4


def test_a_request_made_before_binding_admits_no_values(
    setup: tuple[str, Policy, AuditStore, list[str]],
) -> None:
    """Requests of a store upgraded in place have no binding: their runs ask again."""
    sql = PURGE
    asked = _approved(setup)
    with sqlite3.connect(str(setup[2].url).removeprefix("sqlite:///")) as db:
        db.execute("UPDATE lgpd_approval_requests SET bound_values = NULL")
    again = _asks(setup, sql, ("2021-06-01",))
    assert again != asked
    assert _rows(setup) == 10
