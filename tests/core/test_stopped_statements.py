"""A statement that ran and was then stopped — its rows could not be fetched or masked, the
subject trail failed, or the task was interrupted (an orchestrator's timeout, Ctrl-C) — gets
an outcome that says so, never an ``ok`` written when the connection closes for rows the
task did not receive; a write's outcome also says how many rows it changed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from faker import Faker

from lgpd_tasks.approvals import ApprovalStore, Approver
from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.audit.store import AuditRecord
from lgpd_tasks.connection import GuardedConnection, connect
from lgpd_tasks.errors import ApprovalRequired, LgpdError, MaskingError, StatementFailed
from lgpd_tasks.evidence.subjects import StatementTrail, SubjectTrail
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker
from lgpd_tasks.policy import parse_policy
from tests.core.results import FETCH_WAYS, fetch

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("masking_key")]

WHO = TaskIdentity("airflow", "contractor", "load", run_id="manual__1", attempt=1)

POLICY = """\
version: 1
dialect: postgres
purposes:
  report: {{legal_basis: legitimate_interest, retention: 30d, data_subjects: [customers]}}
scopes:
  rw:
    purpose: report
    read:
      {schema}.people: "*"
    write:
      {schema}.people: "*"
subjects:
  {schema}.people: {{key: cpf, primary_key: id, category: customers}}
masking:
  columns: {{cpf: hmac, nome: redact}}
"""

ROWS = 5


class _Timeout(BaseException):
    """What an orchestrator's task timeout is like: not an Exception, not Ctrl-C."""


@pytest.fixture
def people(pg_schema: str, postgres_dsn: str) -> str:
    fake = Faker("pt_BR")
    Faker.seed(5)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".people (id int, nome text, cpf text, nasc date)')
        with conn.cursor() as cur:
            cur.executemany(
                f'INSERT INTO "{pg_schema}".people VALUES (%s, %s, %s, %s)',
                [(i, fake.name(), fake.cpf(), fake.date_of_birth()) for i in range(ROWS)],
            )
    return f"{pg_schema}.people"


@pytest.fixture
def conn(people: str, postgres_dsn: str, audit: AuditStore) -> Iterator[GuardedConnection]:
    policy = parse_policy(POLICY.format(schema=people.split(".")[0]), "policy.yaml")
    with connect(postgres_dsn, policy=policy, scope="rw", identity=WHO, audit=audit) as c:
        yield c


def _raising(stop: type[BaseException]) -> Callable[..., Any]:
    """A method that raises ``stop``: the fault injected where the statement is stopped."""

    def stopped(*args: Any, **kw: Any) -> Any:
        raise stop("stopped")

    return stopped


def _only_statement(audit: AuditStore) -> AuditRecord:
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.outcome is not None, "the intent has no outcome"
    return record


def _stopped_by(name: str, audit: AuditStore) -> AuditRecord:
    """The only statement's record, after asserting its outcome is an error of ``name``."""
    record = _only_statement(audit)
    assert record.status == "error"
    assert record.outcome is not None
    assert record.outcome.details["error_class"] == name
    return record


def _count(postgres_dsn: str, people: str) -> int:
    with psycopg.connect(postgres_dsn) as raw:
        row = raw.execute(f"SELECT count(*) FROM {people}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("how", FETCH_WAYS)
def test_a_write_whose_returned_rows_cannot_be_loaded_records_the_rows_it_wrote(
    conn: GuardedConnection, people: str, audit: AuditStore, postgres_dsn: str, how: str
) -> None:
    """The INSERT ran and its row is committed; the driver cannot load the date it returns
    (after year 9999). The outcome is an error, and says the statement wrote one row."""
    sql = f"INSERT INTO {people} (id, nasc) VALUES (99, '19640-01-01') RETURNING id, nasc"
    with pytest.raises(StatementFailed, match="while its rows were fetched"):
        fetch(conn, sql, how)
    conn.commit()
    record = _stopped_by("DataError", audit)
    assert record.outcome.details["rows_written"] == 1
    assert record.rows == 1  # rows read or changed, as reports count them
    assert _count(postgres_dsn, people) == ROWS + 1


def test_a_read_that_fails_records_no_rows_written(
    conn: GuardedConnection, people: str, audit: AuditStore
) -> None:
    with psycopg.connect(conn._raw.info.dsn, autocommit=True) as raw:
        raw.execute(f"UPDATE {people} SET nasc = '19640-01-01' WHERE id = 1")
    with pytest.raises(StatementFailed):
        conn.execute(f"SELECT id, nasc FROM {people}").fetchall()
    assert "rows_written" not in _only_statement(audit).outcome.details  # type: ignore[union-attr]


def test_an_interrupt_while_rows_are_fetched_is_the_outcome(
    conn: GuardedConnection, people: str, audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cur = conn.execute(f"SELECT id, nome FROM {people}")

    def interrupted(self: psycopg.Cursor[Any], *args: Any) -> list[Any]:
        raise _Timeout

    monkeypatch.setattr(psycopg.Cursor, "fetchall", interrupted)
    with pytest.raises(_Timeout):
        cur.fetchall()
    conn.close()
    _stopped_by("_Timeout", audit)


@pytest.mark.parametrize("how", ["query_df", "fetch_df", "fetchall", "fetchone"])
@pytest.mark.parametrize("stop", [_Timeout, MaskingError])
def test_what_stops_masking_is_the_outcome(
    conn: GuardedConnection,
    people: str,
    audit: AuditStore,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    stop: type[BaseException],
) -> None:
    """Rows arrived but the task never received them masked: the outcome is an error of the
    class that stopped the masking, not the ``ok`` the connection's close would write."""

    stopped = _raising(stop)
    monkeypatch.setattr(Masker, "mask_dataframe", stopped)
    monkeypatch.setattr(Masker, "mask_rows", stopped)
    sql = f"SELECT id, nome, cpf FROM {people}"
    run = conn.query_df if how == "query_df" else lambda sql: getattr(conn.execute(sql), how)()
    with pytest.raises(stop):
        run(sql)
    conn.close()
    _stopped_by(stop.__name__, audit)


@pytest.mark.parametrize("stop", [_Timeout, RuntimeError])
def test_what_stops_the_subject_trail_is_the_outcome(
    conn: GuardedConnection,
    people: str,
    audit: AuditStore,
    monkeypatch: pytest.MonkeyPatch,
    postgres_dsn: str,
    stop: type[BaseException],
) -> None:
    """The DELETE ran before its trail failed to begin: its outcome says so, with the rows
    it deleted (which a commit keeps)."""
    assert conn._subject_trail is not None

    stopped = _raising(stop)
    monkeypatch.setattr(SubjectTrail, "begin", stopped)
    with pytest.raises(stop):
        conn.execute(f"DELETE FROM {people} WHERE id < 2")
    conn.commit()
    record = _stopped_by(stop.__name__, audit)
    assert record.outcome.details["rows_written"] == 2
    assert record.rows == 2
    assert _count(postgres_dsn, people) == ROWS - 2


def test_a_data_modifying_cte_or_sqlite_returning_records_an_unknown_count(
    conn: GuardedConnection, people: str, audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write under a SELECT reports the SELECT's count, not the rows it changed: the
    outcome says the statement wrote, and that the count is unknown (null)."""

    stopped = _raising(RuntimeError)
    monkeypatch.setattr(SubjectTrail, "begin", stopped)
    sql = f"WITH d AS (DELETE FROM {people} WHERE id < 3 RETURNING id) SELECT count(*) FROM d"
    with pytest.raises(RuntimeError):
        conn.execute(sql)
    outcome = _only_statement(audit).outcome
    assert outcome is not None
    assert outcome.details["rows_written"] is None


def test_a_select_for_update_records_no_rows_written(
    conn: GuardedConnection, people: str, audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = _raising(_Timeout)
    monkeypatch.setattr(Masker, "mask_rows", stopped)
    with pytest.raises(_Timeout):
        conn.execute(f"SELECT id, nome FROM {people} FOR UPDATE").fetchall()
    outcome = _only_statement(audit).outcome
    assert outcome is not None
    assert "rows_written" not in outcome.details


@pytest.mark.parametrize("how", ["fetchall", "query_df", "delete"])
@pytest.mark.parametrize("stop", [_Timeout, RuntimeError])
def test_a_subject_trail_that_fails_to_close_is_the_outcome(
    conn: GuardedConnection,
    people: str,
    audit: AuditStore,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    stop: type[BaseException],
) -> None:
    """Closing the trail writes to the audit store, where a timeout is likely to land: the
    outcome names what stopped it, never ``ok`` written when the connection closes."""

    stopped = _raising(stop)
    monkeypatch.setattr(StatementTrail, "close", stopped)
    sql = f"DELETE FROM {people} WHERE id = 1"
    if how != "delete":
        sql = f"SELECT id, cpf FROM {people}"
    with pytest.raises(stop):
        fetch(conn, sql, how) if how != "delete" else conn.execute(sql)
    conn.close()
    _stopped_by(stop.__name__, audit)


def test_an_interrupt_while_a_stopped_statement_is_recorded_keeps_the_first(
    conn: GuardedConnection, people: str, audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second interrupt lands while the first is being recorded (in the trail's close):
    the outcome still names the first, not ``ok``."""

    stopped = _raising(_Timeout)
    monkeypatch.setattr(Masker, "mask_rows", stopped)
    monkeypatch.setattr(StatementTrail, "close", stopped)
    with pytest.raises(_Timeout):
        conn.execute(f"SELECT id, cpf FROM {people}").fetchall()
    conn.close()
    _stopped_by("_Timeout", audit)


def test_a_stopped_result_hands_out_no_more_rows(
    conn: GuardedConnection, people: str, audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows after a stop would be counted in no outcome and missing from the subject trail:
    the cursor refuses them until it runs a statement again."""
    cur = conn.execute(f"SELECT id, cpf FROM {people}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Masker, "mask_rows", lambda *a, **k: (_ for _ in ()).throw(MaskingError("x")))
        with pytest.raises(MaskingError):
            cur.fetchone()
    with pytest.raises(LgpdError, match="the result was stopped"):
        cur.fetchall()
    cur.execute(f"SELECT count(id) FROM {people}")
    assert cur.fetchall() == [(ROWS,)]
    outcomes = [r.outcome for r in audit.records(EntryFilter(kind="statement"))]
    assert [o.details["status"] for o in outcomes if o is not None] == ["error", "ok"]


def test_an_approved_write_that_ran_keeps_its_approval_used(
    people: str, postgres_dsn: str, audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approved DELETE ran before its trail failed: the approval is used up, so the same
    DELETE needs a new one (a released approval would admit it a second time)."""
    schema = people.split(".")[0]
    policy = parse_policy(
        POLICY.format(schema=schema).replace(
            f'      {schema}.people: "*"\nsubjects',
            f'      {schema}.people: "*"\n    require_approval: [delete]\nsubjects',
        ),
        "policy.yaml",
    )
    sql = f"DELETE FROM {people} WHERE id < %s"
    approvals = ApprovalStore(audit)
    with (
        connect(postgres_dsn, policy=policy, scope="rw", identity=WHO, audit=audit) as c,
        pytest.raises(ApprovalRequired) as asked,
    ):
        c.execute(sql, (2,))
    approvals.approve(asked.value.request_id, Approver("dpo"), "two rows")

    stopped = _raising(RuntimeError)
    with connect(postgres_dsn, policy=policy, scope="rw", identity=WHO, audit=audit) as c:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(SubjectTrail, "begin", stopped)
            with pytest.raises(RuntimeError):
                c.execute(sql, (2,))
        c.commit()
        with pytest.raises(ApprovalRequired):
            c.execute(sql, (2,))
    request = approvals.get(asked.value.request_id)
    assert request is not None
    assert request.consumed_at is not None
    assert _count(postgres_dsn, people) == ROWS - 2


def test_a_stopped_sqlite_returning_leaves_the_transaction_committable(
    tmp_path: Path, audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite steps a statement as its rows are read: an ``UPDATE ... RETURNING`` stopped
    before its rows were read kept the commit from running ("SQL statements in progress")."""
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, nome TEXT, cpf TEXT)")
        db.executemany("INSERT INTO people VALUES (?, ?, ?)", [(i, "x", None) for i in range(5)])
    db.close()
    policy = parse_policy(
        POLICY.replace("dialect: postgres", "dialect: sqlite").format(schema="main"), "p.yaml"
    )

    stopped = _raising(_Timeout)
    monkeypatch.setattr(SubjectTrail, "begin", stopped)
    with connect(f"sqlite:///{path}", policy=policy, scope="rw", identity=WHO, audit=audit) as c:
        with pytest.raises(_Timeout):
            c.execute("UPDATE people SET nome = 'y' WHERE id < 3 RETURNING id")
        c.commit()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM people WHERE nome = 'y'").fetchone() == (3,)
    db.close()
    outcome = _only_statement(audit).outcome
    assert outcome is not None
    assert outcome.details["rows_written"] is None


def test_a_query_whose_trail_failed_to_begin_hands_out_no_rows(
    conn: GuardedConnection, people: str, audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver holds the rows of a query stopped before its result was set up: a task
    that catches the error gets none of them (they would be unmasked and in no outcome)."""

    stopped = _raising(RuntimeError)
    cur = conn.cursor()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SubjectTrail, "begin", stopped)
        with pytest.raises(RuntimeError):
            cur.execute(f"SELECT id, cpf FROM {people}")
    with pytest.raises(LgpdError, match="the result was stopped"):
        cur.fetchall()
    _stopped_by("RuntimeError", audit)
