"""``query_df`` on PostgreSQL streams a query's result in chunks: the same masked frame, the
same audit outcome and the same errors as ``execute`` followed by ``fetch_df``."""

from __future__ import annotations

import logging
import signal
import traceback
from collections.abc import Iterator
from typing import Any

import pandas as pd
import psycopg
import pytest
from faker import Faker
from psycopg.types.numeric import IntLoader

import lgpd_tasks.connection as connection
from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.connection import GuardedConnection, GuardedCursor, connect
from lgpd_tasks.errors import StatementFailed
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import parse_policy
from lgpd_tasks.streaming import stream_rows

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("masking_key")]

WHO = TaskIdentity("dagster", "contractor", "extract", run_id="run-1", attempt=1)

POLICY = """\
version: 1
dialect: postgres
purposes:
  report: {{legal_basis: legitimate_interest, retention: 30d}}
scopes:
  read:
    purpose: report
    read:
      {schema}.people: "*"
masking:
  columns: {{cpf: hmac, nome: redact, email: partial}}
"""

ROWS = 23


@pytest.fixture
def people(pg_schema: str, postgres_dsn: str) -> str:
    fake = Faker("pt_BR")
    Faker.seed(11)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".people '
            "(id int, nome text, cpf text, email text, nasc date, valor numeric(10, 2))"
        )
        with conn.cursor() as cur:
            cur.executemany(
                f'INSERT INTO "{pg_schema}".people VALUES (%s, %s, %s, %s, %s, %s)',
                [
                    (i, fake.name(), fake.cpf(), fake.email(), fake.date_of_birth(), i * 1.5)
                    for i in range(ROWS)
                ],
            )
    return f"{pg_schema}.people"


@pytest.fixture
def conn(people: str, postgres_dsn: str, audit: AuditStore) -> Iterator[GuardedConnection]:
    policy = parse_policy(POLICY.format(schema=people.split(".")[0]), "policy.yaml")
    with connect(postgres_dsn, policy=policy, scope="read", identity=WHO, audit=audit) as c:
        yield c


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4 rows: every result below spans several."""
    monkeypatch.setattr(connection, "STREAM_ROWS", 4)


def _unstreamed(conn: GuardedConnection, sql: str, parameters: Any = None) -> pd.DataFrame:
    cur = conn.execute(sql, parameters)
    try:
        return cur.fetch_df() if cur.description is not None else pd.DataFrame()
    finally:
        cur.close()


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize(
    ("sql", "parameters"),
    [
        pytest.param("SELECT * FROM {t} ORDER BY id", None, id="every-column"),
        pytest.param("SELECT id, nome AS quem, cpf FROM {t} WHERE id > %s", (3,), id="renamed"),
        pytest.param("SELECT cpf, cpf, upper(nome) FROM {t}", None, id="repeated-labels"),
        pytest.param("SELECT count(*), max(email) FROM {t}", None, id="one-row"),
        pytest.param("SELECT id, nome FROM {t} WHERE id < %(n)s", {"n": -1}, id="empty"),
        pytest.param("SELECT 1 AS a, %s::text AS b WHERE false", ("x",), id="empty-literal"),
        pytest.param("SELECT id FROM {t} WHERE false -- a comment", None, id="empty-comment"),
    ],
)
def test_a_streamed_result_is_the_frame_fetch_df_gives(
    conn: GuardedConnection, people: str, sql: str, parameters: Any
) -> None:
    sql = sql.format(t=people)
    streamed = conn.query_df(sql, parameters)
    pd.testing.assert_frame_equal(streamed, _unstreamed(conn, sql, parameters))
    assert list(streamed.columns)  # an empty result keeps its columns too


@pytest.mark.usefixtures("small_chunks")
def test_a_streamed_result_is_masked_and_its_outcome_counts_every_row(
    conn: GuardedConnection, people: str, audit: AuditStore, postgres_dsn: str
) -> None:
    frame = conn.query_df(f"SELECT id, nome, cpf, email FROM {people}")
    with psycopg.connect(postgres_dsn) as raw:
        cpfs = [r[0] for r in raw.execute(f"SELECT cpf FROM {people}").fetchall()]
    assert len(frame) == ROWS
    assert frame["cpf"].str.startswith("hmac:cpf:").all()
    assert not set(cpfs) & set(frame["cpf"])
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.status == "ok"
    assert record.outcome is not None
    assert record.outcome.details["rows"] == ROWS
    assert record.outcome.details["masked"]["cpf"]["cells"] == ROWS


@pytest.mark.usefixtures("small_chunks")
def test_an_error_of_the_database_after_some_chunks_is_a_refusal(
    conn: GuardedConnection, people: str, audit: AuditStore
) -> None:
    """Rows 0 to 19 arrive in chunks before row 20 divides by zero; as with ``execute``,
    the database refused the statement, and the outcome says so."""
    with pytest.raises(StatementFailed) as info:
        conn.query_df(f"SELECT id, 1 / (20 - id) AS q FROM {people}")
    assert str(info.value).startswith("database refused the statement (DivisionByZero)")
    conn.rollback()
    assert len(conn.query_df(f"SELECT id FROM {people}")) == ROWS  # usable again
    first, _ = audit.records(EntryFilter(kind="statement"))
    assert first.status == "error"
    assert first.outcome is not None
    assert first.outcome.details["error_class"] == "DivisionByZero"


def test_plain_queries_are_streamed_and_others_read_the_usual_way(
    conn: GuardedConnection, people: str
) -> None:
    cur = conn.cursor()
    try:
        for sql, streamed in (
            (f"SELECT * FROM {people}", True),
            (f"WITH p AS (SELECT id FROM {people}) SELECT * FROM p UNION SELECT 1", True),
            (f"SELECT * FROM {people} FOR UPDATE", False),  # locks rows it reads
            (f"EXPLAIN SELECT * FROM {people}", False),
            (f"WITH d AS (DELETE FROM {people} RETURNING id) SELECT * FROM d", False),
        ):
            assert cur._streams(conn.check(sql)) is streamed, sql
    finally:
        cur.close()


def test_an_empty_result_is_described_without_a_value_in_the_statement_text(
    conn: GuardedConnection, people: str, postgres_dsn: str
) -> None:
    """The columns of an empty result come from the statement wrapped in a ``LIMIT 0``, its
    parameters bound by the server: the text other sessions see holds ``$1``, never a CPF."""
    seen: list[str] = []
    cpf = "529.982.247-25"

    def watch(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kw: Any) -> Any:
        out = execute(self, query, params, **kw)
        if str(query).startswith("SELECT * FROM ("):
            with psycopg.connect(postgres_dsn, autocommit=True) as other:
                seen.extend(
                    str(r[0])
                    for r in other.execute(
                        "SELECT query FROM pg_stat_activity WHERE pid = %s",
                        (self.connection.info.backend_pid,),
                    )
                )
        return out

    execute = psycopg.Cursor.execute
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(psycopg.Cursor, "execute", watch)
        frame = conn.query_df(f"SELECT id, nome FROM {people} WHERE cpf = %s", (cpf,))
    assert list(frame.columns) == ["id", "nome"]
    assert seen
    assert all(cpf not in text and "$1" in text for text in seen)


def test_a_describe_that_fails_gives_an_empty_frame_and_leaves_the_transaction_usable(
    conn: GuardedConnection,
    people: str,
    audit: AuditStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database refuses the describing statement (a fault injected): its savepoint is
    rolled back, the statement is recorded ok and the transaction goes on."""
    execute = psycopg.Cursor.execute

    def refused(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kw: Any) -> Any:
        if str(query).startswith("SELECT * FROM ("):
            return execute(self, "SELECT 1 / 0")
        return execute(self, query, params, **kw)

    monkeypatch.setattr(psycopg.Cursor, "execute", refused)
    with caplog.at_level(logging.WARNING, logger="lgpd_tasks.connection"):
        frame = conn.query_df(f"SELECT id, cpf FROM {people} WHERE id < %s", (0,))
    assert frame.empty
    assert list(frame.columns) == []
    assert "could not be described (DivisionByZero)" in caplog.text
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.status == "ok"
    assert len(conn.query_df(f"SELECT id FROM {people}")) == ROWS  # the transaction is fine


class _Timeout(BaseException):
    """What an orchestrator's task timeout is like: not an Exception, not Ctrl-C."""


class _StopAt(IntLoader):
    """Loads ``int4`` as psycopg does, and raises :class:`_Timeout` (a task timeout) on the
    value ``_StopAt.at``, as if the task's time ran out while that chunk was converted."""

    at = 0

    def load(self, data: Any) -> int:
        value = int(bytes(data))
        if value == _StopAt.at:
            raise _Timeout
        return value


@pytest.mark.usefixtures("small_chunks")
def test_an_interrupt_while_rows_arrive_is_recorded_as_the_statements_outcome(
    conn: GuardedConnection, people: str, audit: AuditStore
) -> None:
    """A task's timeout or Ctrl-C (not an Exception) stops the stream in its third chunk:
    the outcome says so, the interrupt goes on and the transaction can roll back."""
    _StopAt.at = 9
    conn._raw.adapters.register_loader("int4", _StopAt)
    with pytest.raises(_Timeout):
        conn.query_df(f"SELECT id FROM {people} ORDER BY id")
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.status == "error"
    assert record.outcome is not None
    assert record.outcome.details["error_class"] == "_Timeout"
    conn.rollback()
    assert conn._raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_an_interrupt_while_rows_arrive_cancels_the_query_the_server_still_runs(
    conn: GuardedConnection,
) -> None:
    """The server would go on sending rows of a long result: after the interrupt it is
    cancelled, so the connection is usable at once instead of reading the rest first."""
    _StopAt.at = 20_000
    conn._raw.adapters.register_loader("int4", _StopAt)
    with pytest.raises(_Timeout):
        conn.query_df("SELECT generate_series(1, 200000000)::int4 AS g")
    assert conn._raw.info.transaction_status != psycopg.pq.TransactionStatus.ACTIVE
    conn.rollback()
    conn._raw.adapters.register_loader("int4", IntLoader)
    assert conn.query_df("SELECT 7::int4 AS n")["n"].tolist() == [7]


@pytest.mark.usefixtures("small_chunks")
def test_an_interrupted_stream_leaves_no_row_in_the_frames_its_traceback_keeps(
    conn: GuardedConnection, people: str
) -> None:
    """Error reporters (Sentry, for one) read the local variables of a traceback's frames:
    the rows loaded before the interrupt, not yet masked, are not among them."""
    cpfs = set(_unmasked_cpfs(conn, people))
    _StopAt.at = 9
    conn._raw.adapters.register_loader("int4", _StopAt)
    with pytest.raises(_Timeout) as caught:
        conn.query_df(f"SELECT id, cpf FROM {people} ORDER BY id")
    held = [
        value
        for frame, _ in traceback.walk_tb(caught.value.__traceback__)
        for value in frame.f_locals.values()
        if isinstance(value, list)
    ]
    assert not any(isinstance(row, tuple) and cpfs & set(row) for rows in held for row in rows)


def _unmasked_cpfs(conn: GuardedConnection, people: str) -> list[str]:
    with psycopg.connect(conn._raw.info.dsn) as raw:
        return [cpf for (cpf,) in raw.execute(f"SELECT cpf FROM {people}")]


class _PublicOnly:
    """A psycopg cursor seen through its public API alone (a psycopg without the steps
    stream_rows drives)."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor
        self.connection = cursor.connection

    def stream(self, *args: Any, **kw: Any) -> Iterator[Any]:
        return self._cursor.stream(*args, **kw)


@pytest.mark.parametrize("size", [1, 4, 23, 5000])
def test_rows_converted_a_chunk_at_a_time_are_the_rows_stream_yields(
    people: str, postgres_dsn: str, size: int
) -> None:
    sql = f"SELECT * FROM {people} WHERE id > %s ORDER BY id"
    with psycopg.connect(postgres_dsn) as raw:
        expected = list(raw.cursor().stream(sql, (2,), size=size))
        assert len(expected) == ROWS - 3
        assert stream_rows(raw.cursor(), sql, (2,), size) == expected
        assert stream_rows(_PublicOnly(raw.cursor()), sql, (2,), size) == expected
        assert stream_rows(raw.cursor(), sql, (10**6,), size) == []


def test_a_libpq_without_chunks_reads_the_usual_way(
    conn: GuardedConnection, people: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "_CHUNKED_LIBPQ", 10**9)
    streamed: list[str] = []
    stream = GuardedCursor._stream

    def spy(self: GuardedCursor, *args: Any) -> list[Any]:
        streamed.append("yes")
        return stream(self, *args)

    monkeypatch.setattr(GuardedCursor, "_stream", spy)
    assert len(conn.query_df(f"SELECT id, cpf FROM {people}")) == ROWS
    assert streamed == []


@pytest.mark.parametrize("how", ["execute", "query_df"])
def test_a_timeout_while_the_database_works_is_recorded_and_reaches_the_task(
    conn: GuardedConnection, audit: AuditStore, how: str
) -> None:
    """psycopg cancels the server's query itself for Ctrl-C only; after a task's timeout
    the query is cancelled too, the outcome says ``_Timeout`` and the connection rolls
    back, instead of a rollback error taking the timeout's place."""
    sql = "SELECT count(*) FROM generate_series(1, 200000000) AS g"

    def expire(signum: int, frame: Any) -> None:
        raise _Timeout

    run = conn.execute if how == "execute" else conn.query_df
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(_Timeout):
            run(sql)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    conn.rollback()
    assert conn.query_df("SELECT 1 AS one")["one"].tolist() == [1]
    first = audit.records(EntryFilter(kind="statement"))[0]
    assert first.status == "error"
    assert first.outcome is not None
    assert first.outcome.details["error_class"] == "_Timeout"


def test_an_empty_result_after_ddl_is_described_with_its_new_columns(
    conn: GuardedConnection, people: str, postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The describing statement is never prepared: psycopg prepares a statement run five
    times, and a prepared one whose table gained a column fails with "cached plan must not
    change result type" instead of describing it."""
    sql = f"SELECT * FROM {people} WHERE id < %s"
    for _ in range(7):
        assert list(conn.query_df(sql, (0,)).columns) == [
            "id",
            "nome",
            "cpf",
            "email",
            "nasc",
            "valor",
        ]
    conn.commit()
    with psycopg.connect(postgres_dsn, autocommit=True) as other:
        other.execute(f"ALTER TABLE {people} ADD COLUMN cidade text")
    with caplog.at_level(logging.WARNING, logger="lgpd_tasks.connection"):
        frame = conn.query_df(sql, (0,))
    assert list(frame.columns) == ["id", "nome", "cpf", "email", "nasc", "valor", "cidade"]
    assert "could not be described" not in caplog.text
