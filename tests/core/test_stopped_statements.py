"""A statement that ran and was then stopped — its rows could not be fetched or masked, the
subject trail failed, or the task was interrupted (an orchestrator's timeout, Ctrl-C) — gets
an outcome that says so, never an ``ok`` written when the connection closes for rows the
task did not receive; a write's outcome also says how many rows it changed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from faker import Faker

from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.audit.store import AuditRecord
from lgpd_tasks.connection import GuardedConnection, connect
from lgpd_tasks.errors import MaskingError, StatementFailed
from lgpd_tasks.evidence.subjects import SubjectTrail
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker
from lgpd_tasks.policy import parse_policy
from tests.core.results import FETCH_WAYS, fetch

pytestmark = pytest.mark.postgres

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


@pytest.fixture(autouse=True)
def masking_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret-0123")


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


def _only_statement(audit: AuditStore) -> AuditRecord:
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.outcome is not None, "the intent has no outcome"
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
    record = _only_statement(audit)
    assert record.status == "error"
    assert record.outcome is not None
    assert record.outcome.details["error_class"] == "DataError"
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
    record = _only_statement(audit)
    assert record.status == "error"
    assert record.outcome is not None
    assert record.outcome.details["error_class"] == "_Timeout"


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

    def stopped(self: Masker, *args: Any, **kw: Any) -> Any:
        raise stop("stopped")

    monkeypatch.setattr(Masker, "mask_dataframe", stopped)
    monkeypatch.setattr(Masker, "mask_rows", stopped)
    sql = f"SELECT id, nome, cpf FROM {people}"
    run = conn.query_df if how == "query_df" else lambda sql: getattr(conn.execute(sql), how)()
    with pytest.raises(stop):
        run(sql)
    conn.close()
    record = _only_statement(audit)
    assert record.status == "error"
    assert record.outcome is not None
    assert record.outcome.details["error_class"] == stop.__name__


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

    def stopped(self: SubjectTrail, *args: Any, **kw: Any) -> Any:
        raise stop("stopped")

    monkeypatch.setattr(SubjectTrail, "begin", stopped)
    with pytest.raises(stop):
        conn.execute(f"DELETE FROM {people} WHERE id < 2")
    conn.commit()
    record = _only_statement(audit)
    assert record.status == "error"
    assert record.outcome is not None
    assert record.outcome.details["error_class"] == stop.__name__
    assert record.outcome.details["rows_written"] == 2
    assert record.rows == 2
    assert _count(postgres_dsn, people) == ROWS - 2
