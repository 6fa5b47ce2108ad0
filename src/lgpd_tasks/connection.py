"""GuardedConnection: the DB-API wrapper that checks, gates, audits and masks every statement.

The flow of one statement: analyse and decide (``lgpd_tasks.sql``) -> on ``block`` record it
and raise -> on ``approve`` look up the approval (or open a request and raise) -> write the
audit *intent* -> execute on the scoped connection -> mask results -> write the *outcome*.
If the intent cannot be written the statement does not run.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self, TypeVar

from lgpd_tasks.approvals import ApprovalStore, NewRequest, Status
from lgpd_tasks.approvals.values import statement_values
from lgpd_tasks.audit import AuditStore, NewEntry, parse_db_url, redact_url
from lgpd_tasks.audit.store import isotime, utcnow
from lgpd_tasks.credentials import (
    CredentialBroker,
    PostgresRoleBroker,
    ScopedCredential,
    broker_from_policy,
)
from lgpd_tasks.errors import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalRequired,
    LgpdError,
    Reason,
    ScopeViolation,
    StatementBlocked,
    StatementFailed,
    UsageError,
)
from lgpd_tasks.evidence.subjects import StatementTrail, SubjectTrail
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker, MaskingReport
from lgpd_tasks.policy import ALL as ALL_COLUMNS
from lgpd_tasks.policy import Policy, Scope, load_policy
from lgpd_tasks.redaction import (
    explicit_aliases,
    is_plain_label,
    label_without_literals,
    scope_columns,
    scrub_decision,
    scrub_error,
)
from lgpd_tasks.sql import Decision, StatementAnalysis, check
from lgpd_tasks.streaming import cancel_running_query, stream_rows

if TYPE_CHECKING:
    import pandas as pd

_log = logging.getLogger(__name__)

Driver = Literal["sqlite", "postgres"]

#: Rule ids whose refusal means "outside the scope" (raised as ScopeViolation).
SCOPE_RULES = frozenset({"read_scope", "write_scope"})

_T = TypeVar("_T")

#: What the database did, in :class:`StatementFailed` messages.
REFUSED = "refused the statement"
FAILED_FETCHING = "failed the statement while its rows were fetched"
REFUSED_COMMIT = "refused the commit"
#: PostgreSQL's name and SQLSTATE for a transaction a failed statement aborted.
_ABORTED, _ABORTED_STATE = "InFailedSqlTransaction", "25P02"

#: Rows per chunk when a query's result is streamed from PostgreSQL (``query_df``).
STREAM_ROWS = 5_000
#: The first libpq that sends a result in chunks (``PQsetChunkedRowsMode``).
_CHUNKED_LIBPQ = 170_000


class DatabaseCatalog:
    """Column names from the database's own catalogue, to expand ``SELECT *``."""

    def __init__(self, raw: Any, driver: Driver) -> None:
        self._raw = raw
        self._driver = driver
        self._cache: dict[str, tuple[str, ...] | None] = {}

    def columns(self, table: str) -> Sequence[str] | None:
        if table not in self._cache:
            self._cache[table] = self._lookup(table)
        return self._cache[table]

    def forget(self) -> None:
        """Forget the columns read so far: another session may have changed the tables since.

        The connection forgets them when no transaction is open. Inside one, a table the
        transaction read is locked against changes, but one it has only looked up is not,
        and a ``REPEATABLE READ`` transaction reads the catalogue as of its snapshot: a
        result wider than what was checked is therefore checked again, and refused when
        the catalogue still cannot explain it (see ``GuardedConnection._recheck``).
        """
        self._cache.clear()

    def _lookup(self, table: str) -> tuple[str, ...] | None:
        schema, _, name = table.rpartition(".")
        try:
            if self._driver == "sqlite":
                cur = self._raw.execute(
                    "SELECT name FROM pragma_table_info(?, ?)", (name, schema or "main")
                )
            else:
                # pg_attribute, not information_schema.columns: the latter hides columns the
                # login may not read, and a scoped role would see '*' as only its grants
                cur = self._raw.cursor()
                cur.execute(
                    "SELECT a.attname FROM pg_catalog.pg_attribute a "
                    "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
                    "AND a.attnum > 0 "
                    "AND NOT a.attisdropped ORDER BY a.attnum",
                    (schema or "public", name),
                )
            cols = tuple(str(r[0]) for r in cur.fetchall())
        except Exception:  # an unreadable catalogue leaves '*' unexpanded: fail closed
            return None
        return cols or None


@dataclass
class _Running:
    """The statement a cursor last ran, until its outcome is written."""

    intent_id: str
    decision: Decision
    started: float
    approval_id: str | None
    is_query: bool
    rows: int = 0
    #: whether the database ran it (its approval, if any, is then used up)
    ran: bool = False
    #: rows an INSERT, UPDATE, DELETE or MERGE changed, as the driver counts them (the sum
    #: over the parameter sets of ``executemany``); None when unknown or not such a write
    written: int | None = None
    #: what stopped it once it ran, for an outcome written later (when the connection closes)
    stopped_by: BaseException | None = None
    #: whether it was checked again after it ran (its result had columns the check had not)
    rechecked: bool = False
    masked: dict[str, dict[str, Any]] = field(default_factory=dict)
    trail: StatementTrail | None = None
    done: bool = False


class GuardedCursor:
    """A DB-API 2.0 cursor whose statements go through the guard and the audit."""

    def __init__(self, connection: GuardedConnection, raw: Any) -> None:
        self._conn = connection
        self._raw = raw
        self._running: _Running | None = None
        self._columns: list[str] = []
        self._sources: list[frozenset[str]] | None = None
        self._scalars: frozenset[int] = frozenset()
        self._description: Any = None
        self._stopped = False
        self.arraysize = 1

    # -- DB-API attributes ----------------------------------------------------------------

    @property
    def description(self) -> Any:
        """The driver's description of the result, its labels masked when results are.

        SQLite labels an unaliased expression with its text, literals included
        (``cpf = '529.982.247-25'``); such a label comes back with its literals as ``?`` and
        personal-data spans masked, as a tuple of 7-tuples. Labels that need nothing keep
        the driver's own description.
        """
        return self._description

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount)

    @property
    def connection(self) -> GuardedConnection:
        return self._conn

    # -- executing ------------------------------------------------------------------------

    def execute(self, sql: str, parameters: Any = None) -> Self:
        self._new_statement()
        running = self._conn._admit(sql, parameters, many=False)
        self._run(running, sql, parameters)
        return self

    def _new_statement(self) -> None:
        """End the result of the cursor's last statement, if any, before it runs another."""
        self._finish()
        self._description = None
        self._stopped = False

    def _call(
        self,
        running: _Running,
        started: float,
        call: Callable[[], _T],
        failure: Callable[[Exception], str] = lambda _: REFUSED,
    ) -> _T:
        """``call()``, the driver running ``running``'s statement: its error fails the
        statement (as ``failure`` says what the database did), and an interrupt is recorded
        as its outcome and goes on."""
        try:
            return call()
        except Exception as err:
            raise self._conn._failed(running, err, started, failure=failure(err)) from None
        except BaseException as err:
            self._conn._interrupted(running, err, started)
            raise

    def _run(self, running: _Running, sql: str, parameters: Any) -> None:
        started = time.perf_counter()
        kinds = {s.kind for s in running.decision.statements}
        if "commit" in kinds and self._conn._writes_lost():
            # a COMMIT in SQL would end the transaction as the database's silent ROLLBACK
            running.started = started
            lost = self._conn._lost_commit()
            self._conn._complete(running, lost)
            raise lost
        if parameters is None:
            self._call(running, started, lambda: self._raw.execute(sql))
        else:
            self._call(running, started, lambda: self._raw.execute(sql, parameters))
        self._after_execute(running, started, sql, parameters, self._raw.description, many=False)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> Self:
        self._new_statement()
        params = list(seq_of_parameters)
        running = self._conn._admit(sql, params, many=True)
        started = time.perf_counter()
        self._call(running, started, lambda: self._raw.executemany(sql, params))
        self._after_execute(running, started, sql, params, self._raw.description, many=True)
        return self

    def read_df(self, sql: str, parameters: Any = None) -> pd.DataFrame:
        """Run one statement and return its whole result as a masked DataFrame (``execute``
        then :meth:`fetch_df`; an empty frame for a statement that returns no rows).

        On PostgreSQL (libpq 17 or newer) a plain ``SELECT`` is streamed in chunks of
        :data:`STREAM_ROWS` rows: the database sends the next chunk while this process
        converts the last, and the driver never holds the whole result at once.
        """
        import pandas as pd

        self._new_statement()
        running = self._conn._admit(sql, parameters, many=False)
        if not self._streams(running.decision):
            self._run(running, sql, parameters)
            return self.fetch_df() if self._description is not None else pd.DataFrame()
        started = time.perf_counter()
        rows = self._stream(running, sql, parameters, started)
        description = self._call(
            running,
            started,
            lambda: self._raw.description if rows else self._describe(sql, parameters),
        )
        self._after_execute(running, started, sql, parameters, description, many=False)
        if description is None:
            return pd.DataFrame()
        return self._frame(rows)

    def _streams(self, decision: Decision) -> bool:
        """Whether ``decision``'s statement is read by :meth:`_stream`: one plain query
        (no write, no ``EXPLAIN``) on a PostgreSQL driver whose libpq sends chunks."""
        if self._conn.driver != "postgres" or len(decision.statements) != 1:
            return False
        statement = decision.statements[0]
        if statement.kind != "select" or statement.explain or statement.write_kinds:
            return False
        if statement.tables_written:  # SELECT ... FOR UPDATE locks: read the usual way
            return False
        from psycopg import pq

        return pq.version() >= _CHUNKED_LIBPQ

    def _stream(self, running: _Running, sql: str, parameters: Any, started: float) -> list[Any]:
        """Every row of the result, fetched in chunks.

        An error of the database is the statement's (:data:`REFUSED`, as when ``execute``
        gets it); an error raised here once rows have arrived (a value the driver cannot
        load) failed the statement while its rows were fetched, as in :meth:`_fetch`.
        """

        def failure(err: Exception) -> str:
            arrived = self._raw.pgresult is not None
            server = getattr(err, "sqlstate", None) is not None
            return FAILED_FETCHING if arrived and not server else REFUSED

        return self._call(
            running,
            started,
            lambda: stream_rows(self._raw, sql, parameters, STREAM_ROWS),
            failure,
        )

    def _describe(self, sql: str, parameters: Any) -> Any:
        """The columns of an empty streamed result (the driver keeps none of them), or None.

        The statement is run again as ``SELECT * FROM (<statement>) LIMIT 0``, which the
        server plans and describes without reading its subquery (nothing is computed), its
        parameters bound by the server as before (so no value enters the statement's text,
        which ``pg_stat_activity`` and the server's log show) and never prepared (psycopg
        prepares a statement run five times, and a prepared one fails once its table gained a
        column); inside a savepoint, so that a failure leaves the transaction as it was.
        Should it fail, the empty result comes back as a frame without columns, with a
        warning.
        """
        body = sql.rstrip()
        while body.endswith(";"):
            body = body[:-1].rstrip()
        wrapped = f"SELECT * FROM (\n{body}\n) AS lgpd_empty_result LIMIT 0"
        raw = self._raw.connection
        try:
            with raw.transaction(), raw.cursor() as cur:
                if raw.autocommit:
                    # the statement's locks are gone: do not queue behind a migration's
                    cur.execute("SET LOCAL lock_timeout = '2s'")
                cur.execute(wrapped, parameters, prepare=False)
                return cur.description
        except Exception as err:
            _log.warning(
                "lgpd-tasks: the columns of an empty result could not be described (%s); "
                "it is returned without columns",
                type(err).__name__,
            )
            return None

    def _after_execute(
        self,
        running: _Running,
        started: float,
        sql: str,
        parameters: Any,
        description: Any,
        *,
        many: bool,
    ) -> None:
        running.started = started
        running.ran = True
        # from here on, an outcome not written otherwise is written when the connection closes
        self._conn._unfinished[running.intent_id] = running
        try:
            rowcount = int(self._raw.rowcount)
            running.written = _rows_written(
                running.decision, rowcount, self._conn.driver, returns_rows=description is not None
            )
            self._conn._note_transaction(
                running.decision, rowcount, returns_rows=description is not None
            )
            columns = [str(d[0]) for d in description] if description is not None else []
            if _unchecked_columns(running.decision, len(columns)):
                running.decision = self._conn._recheck(sql, running.decision, len(columns))
                running.rechecked = True
            labels = self._conn._result_labels(columns, sql)
            self._description = _relabelled(description, columns, labels)
            # subject trail: which people's rows this statement returns or changes
            trail = self._conn._subject_trail
            if trail is not None:
                running.trail = trail.begin(
                    running.intent_id, running.decision, columns, sql, parameters, many=many
                )
            if description is not None:
                running.is_query = True
                self._columns = labels
                self._sources = _result_sources(running.decision, len(columns))
                self._scalars = _scalar_columns(self._conn.driver, description)
                self._running = running
                return
            running.rows = max(rowcount, 0)
        except BaseException as err:  # the statement ran: its outcome says what stopped it
            self._stop(err, running)
            raise
        self._conn._complete(running)

    # -- fetching -------------------------------------------------------------------------

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._fetch(self._raw.fetchone)
        if row is None:
            self._finish()
            return None
        return self._mask([row])[0]

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        rows = self._fetch(lambda: self._raw.fetchmany(size or self.arraysize))
        if not rows:
            self._finish()
            return []
        return self._mask(rows)

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._fetch(self._raw.fetchall)
        masked = self._mask(rows) if rows else []
        self._finish()
        return masked

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while True:
            batch = self.fetchmany(1000)
            if not batch:
                return
            yield from batch

    def fetch_df(self) -> pd.DataFrame:
        """The rest of the result as a pandas DataFrame, masked column by column.

        Faster than masking rows when the result holds personal columns, since the masker
        works on whole columns.
        """
        return self._frame(self._fetch(self._raw.fetchall))

    def _frame(self, rows: list[Any]) -> pd.DataFrame:
        """``rows``, the rest of the result, as a masked DataFrame; the statement's outcome
        is written."""
        import pandas as pd

        with self._stopping():
            self._observe(rows)
            frame = pd.DataFrame.from_records(rows, columns=self._columns, coerce_float=False)
            masker = self._conn._masker
            if masker is not None and len(frame):
                frame, report = masker.mask_dataframe(frame, sources=self._sources)
                self._note(report)
        self._finish()
        return frame

    def _fetch(self, fetch: Callable[[], _T]) -> _T:
        """Call the driver's ``fetch``; its error fails the statement as ``execute``'s would.

        Rows are converted as they are fetched, so a value the driver cannot load (a
        PostgreSQL date after year 9999) fails here, with the value in the message: it is
        scrubbed, raised as :class:`StatementFailed` and the outcome records the error.
        """
        if self._stopped:
            raise LgpdError(
                "the result was stopped by an earlier error or interrupt (its outcome is "
                "recorded); run the statement again"
            )
        try:
            return fetch()
        except Exception as err:
            running, self._running = self._running, None
            if running is None or running.done:
                raise self._conn._statement_failed(err, "", FAILED_FETCHING) from None
            self._stopped = True
            self._discard_result()
            raise self._conn._failed(running, err, failure=FAILED_FETCHING) from None
        except BaseException as err:
            self._stop(err)
            raise

    @contextmanager
    def _stopping(self) -> Iterator[None]:
        """Rows are being masked: should anything stop that, the statement's outcome
        records it and it goes on (see :meth:`_stop`)."""
        try:
            yield
        except BaseException as err:
            self._stop(err)
            raise

    def _stop(self, err: BaseException, running: _Running | None = None) -> None:
        """``err`` stopped the result (``running``'s, by default the one being fetched)
        once the statement ran: the outcome is an error of its class (not the ``ok`` the
        connection's close would write for rows the task never received), and no more of
        the result is handed out."""
        running, self._running = running or self._running, None
        self._stopped = True
        if running is not None and not running.done:
            self._conn._interrupted(running, err)
        self._discard_result()

    def _discard_result(self) -> None:
        """Let go of a stopped result's rows the driver still holds: its cursor is closed
        for a new one. (SQLite steps a statement as its rows are read: one left half-read,
        an ``UPDATE ... RETURNING``, would keep the transaction from committing.)"""
        if self._conn.closed:
            return
        try:
            self._raw.close()
            self._raw = self._conn._raw.cursor()
        except Exception as err:
            _log.warning(
                "lgpd-tasks: a stopped result could not be let go (%s)", type(err).__name__
            )

    def _observe(self, rows: list[Any]) -> None:
        running = self._running
        if running is not None:
            running.rows += len(rows)
            if running.trail is not None:
                running.trail.observe(rows)  # raw key values, before masking

    def _note(self, report: MaskingReport) -> None:
        """Add a masking report to the outcome's ``masked`` map, keyed by the shown labels.

        Results may repeat a label (``SELECT cpf, cpf``, or two expressions whose labels
        are alike once their literals are out): columns masked alike share one entry and
        add up their cells; one masked otherwise gets its own key (``label #2``), so the
        record never misstates how a column was masked.
        """
        running = self._running
        if running is None:
            return
        for col in report.columns:
            if not col.cells_masked:
                continue
            how = {"pii_type": col.detected_type, "strategy": col.strategy}
            key, n = col.column, 1
            while (seen := running.masked.get(key)) is not None and any(
                seen[k] != v for k, v in how.items()
            ):
                n += 1
                key = f"{col.column} #{n}"
            running.masked.setdefault(key, {**how, "cells": 0})["cells"] += col.cells_masked

    def _mask(self, rows: list[Any]) -> list[tuple[Any, ...]]:
        with self._stopping():
            self._observe(rows)
            masker = self._conn._masker
            if masker is None:
                return rows
            masked, report = masker.mask_rows(
                self._columns, rows, sources=self._sources, scalar_columns=self._scalars
            )
            self._note(report)
            return masked

    def _finish(self) -> None:
        running, self._running = self._running, None
        if running is not None and not running.done:
            self._conn._complete(running)

    def close(self) -> None:
        try:
            self._finish()
        finally:
            if not self._conn.closed:  # closing the connection closed its cursors
                self._raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GuardedConnection:
    """A DB-API 2.0 connection bound to one task identity and one scope.

    Statements outside the scope raise :class:`ScopeViolation` (or another
    :class:`StatementBlocked`) and never reach the database; risky ones raise
    :class:`ApprovalRequired` until a person approves them. Results come back masked.
    Build one with :func:`connect`.
    """

    def __init__(
        self,
        raw: Any,
        *,
        driver: Driver,
        policy: Policy,
        scope: Scope,
        identity: TaskIdentity,
        audit: AuditStore,
        approvals: ApprovalStore | None = None,
        masker: Masker | None = None,
        role: str | None = None,
        on_close: Callable[[], None] | None = None,
        on_statement: Callable[[Decision], None] | None = None,
        target: str = "",
        subject_trail: SubjectTrail | Literal["policy"] | None = "policy",
    ) -> None:
        self._raw = raw
        self.driver: Driver = driver
        self.policy = policy
        self.scope = scope
        self.identity = identity
        self.audit = audit
        self.approvals = approvals or ApprovalStore(audit)
        self._masker = masker
        # messages and names are scrubbed even when results are not masked
        self._text_masker = masker if masker is not None else Masker()
        self._scrubbed: dict[int, tuple[Decision, Decision]] = {}
        self.role = role
        self.target = target
        self._on_close = on_close
        self._on_statement = on_statement
        self._catalog = DatabaseCatalog(raw, driver)
        self._is_column = scope_columns(scope, self._catalog.columns)
        self._pii_columns = frozenset(policy.masking.columns)
        # "policy": a trail when the policy declares subject keys (None switches it off)
        self._subject_trail = (
            SubjectTrail.from_policy(policy, audit)
            if isinstance(subject_trail, str)
            else subject_trail
        )
        self.closed = False
        self.last_decision: Decision | None = None
        self._unfinished: dict[str, _Running] = {}
        # a statement of the open transaction changed something and was recorded "ok"
        self._wrote = False
        # the guard itself is always on; only the defence-in-depth tests switch it off
        self._guard_enabled = True

    # -- DB-API ---------------------------------------------------------------------------

    def cursor(self) -> GuardedCursor:
        self._check_open()
        return GuardedCursor(self, self._raw.cursor())

    def execute(self, sql: str, parameters: Any = None) -> GuardedCursor:
        """Run one statement on a new cursor (as ``sqlite3.Connection.execute`` does)."""
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> GuardedCursor:
        return self.cursor().executemany(sql, seq_of_parameters)

    def commit(self) -> None:
        self._check_open()
        self._commit_raw()

    def _commit_raw(self) -> None:
        if self._writes_lost():
            raise self._lost_commit()
        self._wrote = False
        if self._aborted():
            self._rollback_or_fail()  # nothing was changed, nothing is lost
            return
        # a deferred constraint fails at COMMIT, and the driver's message quotes the row
        try:
            self._raw.commit()
        except Exception as err:
            raise self._commit_failed(err) from None

    def _commit_failed(self, err: Exception) -> StatementFailed:
        """The statements of this transaction were recorded "ok": say they did not persist."""
        self._record_rollback("commit_failed", type(err).__name__, getattr(err, "sqlstate", None))
        return self._statement_failed(err, "", REFUSED_COMMIT)

    def _in_transaction(self) -> bool:
        """Whether a transaction is open (the tables it read cannot change until it ends)."""
        if self.driver == "sqlite":
            return bool(self._raw.in_transaction)
        from psycopg import pq

        return bool(self._raw.info.transaction_status != pq.TransactionStatus.IDLE)

    def _recheck(self, sql: str, decision: Decision, width: int) -> Decision:
        """The decision for a query whose result has more columns than the guard checked:
        a table gained columns between the check and the run (``SELECT *``). Checked again
        with the catalogue read afresh; the result is refused (the statement ran, its rows
        are not handed out) when that decision blocks it, asks for an approval it was not
        given, or still does not explain every column (a ``REPEATABLE READ`` transaction
        sees the catalogue as of its snapshot, the result as it is)."""
        self._catalog.forget()
        again = self.check(sql)
        if not self._guard_enabled:
            return again
        if again.action == "block":
            raise _blocked(again, self.scope)
        if again.action == "approve" and not _approved_for(decision, again):
            why = "they need an approval it was not given"
        elif _unchecked_columns(again, width):
            # another session changed a table since this transaction's snapshot
            why = "the tables it reads do not have them in this transaction's snapshot"
        else:
            return again
        raise StatementBlocked(
            f"statement in scope {self.scope.name!r} returned {width} columns, some the guard "
            f"had not checked (a table changed meanwhile), and {why}; run it again in a new "
            "transaction",
            scope=self.scope.name,
            reasons=list(again.reasons),
        )

    def _aborted(self) -> bool:
        """Whether the open PostgreSQL transaction was aborted by a failed statement."""
        if self.driver != "postgres":
            return False  # SQLite goes on after a failed statement
        from psycopg import pq

        return bool(self._raw.info.transaction_status == pq.TransactionStatus.INERROR)

    def _writes_lost(self) -> bool:
        """Whether writes of the open transaction, recorded "ok", can no longer be committed:
        a failed statement aborted the PostgreSQL transaction (its COMMIT would be a silent
        ROLLBACK). SQLite goes on after a failed statement; its own ``ON CONFLICT ROLLBACK``
        is not followed (Python's sqlite3 opens and ends transactions on its own rules)."""
        return self._wrote and self._aborted()

    def _lost_commit(self) -> StatementFailed:
        """End the transaction whose writes were lost, record it, and say so."""
        self._wrote = False
        if self._aborted():
            self._rollback_or_fail()
        self._record_rollback("commit_of_aborted_transaction", _ABORTED, _ABORTED_STATE)
        return StatementFailed(
            f"database {REFUSED_COMMIT} ({_ABORTED}): a statement failed earlier in this "
            "transaction, so the database rolled it back; nothing was committed",
            error_class=_ABORTED,
            sqlstate=_ABORTED_STATE,
        )

    def _rollback_or_fail(self) -> None:
        try:
            self._raw.rollback()
        except Exception as err:
            raise self._commit_failed(err) from None

    def _note_transaction(self, decision: Decision, rowcount: int, returns_rows: bool) -> None:
        """Follow the open transaction: a statement that wrote marks it as holding writes
        (a write of no row only when it returns no rows: a result's count is not the count
        of rows changed, as in ``WITH d AS (DELETE ...) SELECT ... WHERE false``); a COMMIT
        or ROLLBACK in SQL ends it."""
        for statement in decision.statements:
            if statement.kind in ("commit", "rollback"):
                self._wrote = False
            elif _writes(statement) and (returns_rows or rowcount != 0):
                self._wrote = True

    def _record_rollback(self, event: str, error_class: str, sqlstate: str | None) -> None:
        self.audit.append(
            NewEntry(
                kind="transaction",
                identity=self.identity,
                scope=self.scope.name,
                purpose=self.scope.purpose.name,
                legal_basis=self.scope.purpose.legal_basis,
                decision="rolled_back",
                details={
                    "event": event,
                    "error_class": error_class,
                    "sqlstate": sqlstate,
                    "role": self.role,
                    "target": self.target,
                },
            )
        )

    def _granted_names(self) -> str:
        """Table and column names the scope grants: no personal data, so messages may keep them."""
        return " ".join(
            f"{t} {' '.join(c)}" for g in (self.scope.read, self.scope.write) for t, c in g.items()
        )

    def rollback(self) -> None:
        self._check_open()
        self._wrote = False
        self._raw.rollback()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        failure: Exception | None = None
        try:
            for running in list(self._unfinished.values()):
                try:
                    self._complete(running)
                except Exception as err:  # the next statement's outcome may still be written
                    failure = failure or err
        finally:
            self._close_raw()
        if failure is not None:
            raise failure

    def _close_raw(self) -> None:
        try:
            self._raw.close()
        finally:
            if self._on_close is not None:
                self._on_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self.closed:
                if exc_type is None:
                    self._commit_raw()
                else:
                    self._rollback_quietly()
        finally:
            if exc_type is None:
                self.close()
            else:
                self._close_quietly()

    def _close_quietly(self) -> None:
        """Close while an exception is on its way: an outcome the close cannot write (the
        audit store is down) is logged, and must not replace it."""
        try:
            self.close()
        except Exception as err:
            _log.warning(
                "lgpd-tasks: an outcome could not be written on close (%s)", type(err).__name__
            )

    def _rollback_quietly(self) -> None:
        """Roll back while an exception is on its way: a rollback that fails (the connection
        is broken, or still busy with a query an interrupt left) must not replace it."""
        self._wrote = False
        try:
            self._raw.rollback()
        except Exception as err:
            _log.warning(
                "lgpd-tasks: rollback failed (%s); closing the connection", type(err).__name__
            )

    # -- conveniences ---------------------------------------------------------------------

    def check(self, sql: str) -> Decision:
        """The guard's decision for ``sql`` in this connection's scope; runs nothing.

        The decision is the one the audit records and exceptions quote: a name written in
        double quotes that is no column (a value in the wrong quotes) is ``?`` in it and
        personal-data spans are masked (see :func:`lgpd_tasks.redaction.scrub_decision`).
        """
        if not self._in_transaction():
            self._catalog.forget()
        decision = check(
            sql,
            self.scope,
            dialect=self.policy.dialect,
            catalog=self._catalog,
            pii_columns=self._pii_columns,
        )
        # the guard returns the same decision object for the same text: scrub it once
        known = self._scrubbed.get(id(decision))
        if known is not None and known[0] is decision:
            return known[1]
        scrubbed = scrub_decision(decision, self._text_masker.mask_text, self._is_column)
        if len(self._scrubbed) >= 1024:
            self._scrubbed.clear()
        self._scrubbed[id(decision)] = (decision, scrubbed)
        return scrubbed

    def _result_labels(self, columns: list[str], sql: str) -> list[str]:
        """Result column labels as shown and recorded: literals out, spans masked.

        An unaliased expression's label (SQLite uses its text) loses its literals; a name
        the statement gives with ``AS`` is the author's and is kept (``AS "2023"``), its
        personal-data spans masked. Left as the driver gives them when results are not
        masked. Two labels may become equal (``cpf = '1'`` and ``cpf = '2'``); results may
        repeat labels, so they stay so.
        """
        masker = self._masker
        if masker is None:
            return columns
        dialect = self.policy.dialect
        if all(is_plain_label(c) for c in columns):
            return [masker.mask_text(c) for c in columns]
        aliases = explicit_aliases(sql, dialect)
        return [
            masker.mask_text(c if c in aliases else label_without_literals(c, dialect))
            for c in columns
        ]

    def query_df(self, sql: str, parameters: Any = None) -> pd.DataFrame:
        """Run a query and return its (masked) result as a pandas DataFrame
        (:meth:`GuardedCursor.read_df`: streamed on PostgreSQL)."""
        cur = self.cursor()
        try:
            return cur.read_df(sql, parameters)
        finally:
            cur.close()

    # -- the guarded path -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise LgpdError("the guarded connection is closed")

    def _admit(self, sql: str, parameters: Any, *, many: bool) -> _Running:
        """Decide, gate and write the intent; raise instead when the statement may not run."""
        self._check_open()
        if not isinstance(sql, str):
            raise StatementBlocked("statement is not a string", scope=self.scope.name, reasons=())
        decision = self.check(sql)
        self.last_decision = decision
        approval_id: str | None = None
        if self._guard_enabled:
            if decision.action == "block":
                self._record_refusal(decision, "block")
                raise _blocked(decision, self.scope)
            if decision.action == "approve":
                values = statement_values(sql, parameters, many, self.policy.dialect)
                approval_id = self._approval(decision, values)
        entry = self._statement_entry(decision, approval_id, parameters, many)
        try:
            stored = self.audit.append(entry)
        except BaseException:
            if approval_id is not None:
                self.approvals.release(approval_id, self.identity)
            raise
        if self._on_statement is not None:
            # integrations turn each admitted statement into lineage metadata; a failing
            # hook must not leave an intent without its statement, so it only warns
            try:
                self._on_statement(decision)
            except Exception as err:
                _log.warning(
                    "lgpd-tasks: on_statement hook failed (%s) for statement %s",
                    type(err).__name__,
                    decision.fingerprint[:16],
                )
        return _Running(
            intent_id=stored.record_id,
            decision=decision,
            started=time.perf_counter(),
            approval_id=approval_id,
            is_query=False,
        )

    def _approval(self, decision: Decision, values: bytes) -> str:
        store = self.approvals
        ttl = self.policy.approvals.ttl
        # a request made for other literal values or parameters is not this statement's
        existing = store.find(decision.fingerprint, self.identity, values)
        if existing is not None:
            # claimed before the statement runs, so one approval admits one run; a
            # statement that then fails gives it back (see _complete)
            if existing.usable and store.consume(existing.id, self.identity):
                return existing.id
            if existing.status is Status.PENDING:
                self._record_refusal(decision, "approve", existing.id, "pending")
                raise _approval_error(
                    ApprovalRequired, existing.id, decision, self.scope, "waits for"
                )
            if existing.status in (Status.DENIED, Status.EXPIRED) and _recent(
                existing.decided_at, ttl
            ):
                cls = ApprovalDenied if existing.status is Status.DENIED else ApprovalExpired
                self._record_refusal(decision, "approve", existing.id, str(existing.status))
                raise _approval_error(cls, existing.id, decision, self.scope, str(existing.status))
        request = store.request(
            self.identity,
            NewRequest(
                fingerprint=decision.fingerprint,
                scope=self.scope.name,
                purpose=self.scope.purpose.name,
                legal_basis=self.scope.purpose.legal_basis,
                statement_kind=",".join(s.kind for s in decision.statements),
                normalized=decision.normalized,
                reasons=decision.reasons,
                ttl=ttl,
                min_approvers=self.policy.approvals.min_approvers,
                values=values,
            ),
            none_pending=True,  # looked up above
        )
        self._record_refusal(decision, "approve", request.id, "pending")
        raise _approval_error(ApprovalRequired, request.id, decision, self.scope, "waits for")

    def _statement_entry(
        self, decision: Decision, approval_id: str | None, parameters: Any, many: bool
    ) -> NewEntry:
        details: dict[str, Any] = {
            "event": "intent",
            "statements": [s.to_dict() for s in decision.statements],
            "normalized": decision.normalized,
            "reasons": [r.to_dict() for r in decision.reasons],
            "approval_id": approval_id,
            "parameters": _describe_parameters(parameters, many, self._text_masker.mask_text),
            "role": self.role,
            "target": self.target,
            "identity": _identity_details(self.identity),
        }
        if not self._guard_enabled:
            details["guard"] = "disabled"
        return NewEntry(
            kind="statement",
            identity=self.identity,
            scope=self.scope.name,
            purpose=self.scope.purpose.name,
            legal_basis=self.scope.purpose.legal_basis,
            decision="allow" if approval_id is None else "approved",
            fingerprint=decision.fingerprint,
            details=details,
        )

    def _record_refusal(
        self,
        decision: Decision,
        action: str,
        approval_id: str | None = None,
        approval_status: str | None = None,
    ) -> None:
        """Record a statement that did not run: blocked, or waiting for its approval."""
        entry = NewEntry(
            kind="statement",
            identity=self.identity,
            scope=self.scope.name,
            purpose=self.scope.purpose.name,
            legal_basis=self.scope.purpose.legal_basis,
            decision=action,
            fingerprint=decision.fingerprint,
            details={
                "event": "refused",
                "statements": [s.to_dict() for s in decision.statements],
                "normalized": decision.normalized,
                "reasons": [r.to_dict() for r in decision.reasons],
                "approval_id": approval_id,
                "approval_status": approval_status,
                "role": self.role,
                "target": self.target,
                "identity": _identity_details(self.identity),
            },
        )
        self.audit.append(entry)

    def _complete(self, running: _Running, error: BaseException | None = None) -> None:
        """Close ``running``'s subject trail and write its outcome: an error when ``error``
        (or what stopped it earlier) is given, else ``ok``.

        A trail that fails to close makes the outcome that failure's, which then goes on
        (with ``error`` given, it is only logged). Until the outcome is written, the
        statement stays among those the connection's close completes.
        """
        if running.done:
            return
        raised: BaseException | None = None
        trail, running.trail = running.trail, None
        if trail is not None:
            try:
                trail.close()
            except BaseException as err:
                if error is None and running.stopped_by is None:
                    error = raised = err
                else:
                    _log.warning(
                        "lgpd-tasks: the subject trail of a stopped statement was not closed (%s)",
                        type(err).__name__,
                    )
        error = error or running.stopped_by
        running.stopped_by = error
        duration_ms = round((time.perf_counter() - running.started) * 1000, 3)
        details: dict[str, Any] = {
            "event": "outcome",
            "status": "error" if error is not None else "ok",
            "rows": running.rows,
            "duration_ms": duration_ms,
        }
        if running.masked:
            details["masked"] = running.masked
        if running.rechecked:
            # the intent records the columns checked first; these are the ones the result had
            details["columns_read"] = {
                table: sorted(columns)
                for s in running.decision.statements
                for table, columns in s.columns_read.items()
            }
        if error is not None:
            details["error_class"] = type(error).__name__
            sqlstate = getattr(error, "sqlstate", None)
            if sqlstate:
                details["sqlstate"] = sqlstate
            if running.ran and _writes_any(running.decision):
                # it ran before it failed (its rows could not be fetched or masked, or the
                # task was stopped): its writes stand unless the transaction rolls back
                details["rows_written"] = running.written
                if running.written is not None:
                    details["rows"] = max(running.rows, running.written)
        if running.approval_id is not None:
            if error is not None and not running.ran:
                # a statement that did not run leaves its approval for the next attempt
                self.approvals.release(running.approval_id, self.identity)
            details["approval_id"] = running.approval_id
        try:
            self._append_outcome(running, details)
        except BaseException as err:
            if running.stopped_by is None and not isinstance(err, Exception):
                running.stopped_by = err  # an interrupt: the outcome, written later, says so
            raise
        running.done = True
        self._unfinished.pop(running.intent_id, None)
        if raised is not None:
            raise raised

    def _append_outcome(self, running: _Running, details: dict[str, Any]) -> None:
        self.audit.append(
            NewEntry(
                kind="outcome",
                identity=self.identity,
                ref=running.intent_id,
                scope=self.scope.name,
                purpose=self.scope.purpose.name,
                legal_basis=self.scope.purpose.legal_basis,
                decision=running.decision.action,
                fingerprint=running.decision.fingerprint,
                details=details,
            )
        )

    def _interrupted(
        self, running: _Running, err: BaseException, started: float | None = None
    ) -> None:
        """Record ``running``'s outcome as an error when an interrupt (a task's timeout,
        Ctrl-C) stops it while the database works, or anything stops it once it ran (the
        subject trail, fetching, masking); the interrupt or error itself goes on."""
        if started is not None:
            running.started = started
        running.stopped_by = running.stopped_by or err
        self._cancel_running_query()
        try:
            self._complete(running, err)
        except Exception:  # the store is down: the connection's close tries again
            _log.warning("lgpd-tasks: the outcome of a stopped statement was not recorded")

    def _cancel_running_query(self) -> None:
        """After an interrupt, stop the query the server may still be running and read its
        end, so the connection can roll back (psycopg does so itself for Ctrl-C only, not
        for an orchestrator's timeout)."""
        if self.driver == "postgres":
            cancel_running_query(self._raw)

    def _failed(
        self,
        running: _Running,
        err: Exception,
        started: float | None = None,
        *,
        failure: str = REFUSED,
    ) -> StatementFailed:
        """Record ``running``'s outcome as an error and build the exception to raise."""
        if started is not None:
            running.started = started
        self._complete(running, err)
        return self._statement_failed(err, running.decision.normalized, failure)

    def _statement_failed(
        self, err: Exception, normalized: str, failure: str = REFUSED
    ) -> StatementFailed:
        """``err`` as a :class:`StatementFailed` whose message holds no value.

        ``failure`` says what the database did (:data:`REFUSED`, :data:`FAILED_FETCHING`...).
        Names of the statement (``normalized``) and of the scope may stay in the message;
        quoted values, dates, long numbers and functions' own messages go, then the text
        goes through the masker.
        """
        cls = type(err).__name__
        message = scrub_error(err, f"{normalized} {self._granted_names()}") or cls
        return StatementFailed(
            f"database {failure} ({cls}): {self._text_masker.mask_text(message)}",
            error_class=cls,
            sqlstate=getattr(err, "sqlstate", None),
        )


def _unchecked_columns(decision: Decision, width: int) -> bool:
    """Whether one query's result has more than the ``width`` columns the guard's analysis
    expanded its select list to: columns it did not check. (A narrower result reveals
    nothing unchecked: ``JOIN ... USING`` merges columns the analysis counts twice. A ``*``
    the catalogue could not expand is checked against the scope's ``"*"`` grant.)"""
    queries = [s for s in decision.statements if s.output_sources]
    if len(queries) != 1 or ALL_COLUMNS in queries[0].output_columns:
        return False
    return width > len(queries[0].output_sources)


def _approved_for(approved: Decision, again: Decision) -> bool:
    """Whether every reason ``again`` asks an approval for was one ``approved`` asked it
    for (and so a person approved)."""
    if approved.action != "approve":
        return False
    asked = {(r.rule, r.message) for r in approved.reasons if r.action == "approve"}
    return all((r.rule, r.message) in asked for r in again.reasons if r.action == "approve")


def _writes_any(decision: Decision) -> bool:
    return any(_writes(s) for s in decision.statements)


def _rows_written(
    decision: Decision, rowcount: int, driver: Driver, *, returns_rows: bool
) -> int | None:
    """The rows a statement that ran changed, as the driver counts them, or None when that
    count is not known: a write under a ``SELECT`` (a data-modifying CTE, whose count is
    the ``SELECT``'s), or SQLite's ``RETURNING`` (counted only once every row is read)."""
    if len(decision.statements) != 1:
        return None
    statement = decision.statements[0]
    if statement.kind not in ("insert", "update", "delete", "merge") or rowcount < 0:
        return None
    if driver == "sqlite" and returns_rows:
        return None
    return rowcount


def _writes(statement: StatementAnalysis) -> bool:
    """Whether ``statement`` changes rows (a data-modifying CTE too; ``SELECT ... FOR
    UPDATE``, which names the tables it locks as written, does not)."""
    return bool(statement.write_kinds or (statement.tables_written and statement.kind != "select"))


class ColumnDescription(NamedTuple):
    """One entry of a relabelled ``cursor.description``: the DB-API 7 items, by position or
    by name (``d[0]`` and ``d.name``, as psycopg's own ``Column`` allows)."""

    name: str
    type_code: Any
    display_size: Any
    internal_size: Any
    precision: Any
    scale: Any
    null_ok: Any


def _result_sources(decision: Decision, width: int) -> list[frozenset[str]]:
    """The names of the columns each of a result's ``width`` columns takes its values from.

    A renamed column (``nome AS quem``, ``max(nome)``, through CTEs, subqueries and UNION)
    is then masked under the rules of ``nome``. When the guard's outputs do not line up
    with the result (several statements, an unexpanded ``*``), every column gets every
    source: masking by the most protective rule, not by none.
    """
    selects = [s for s in decision.statements if s.output_sources]
    if len(selects) == 1 and len(selects[0].output_sources) == width:
        per_column = list(selects[0].output_sources)
    else:
        every = frozenset().union(*(o for s in selects for o in s.output_sources))
        per_column = [every] * width
    return [frozenset(src.rpartition(".")[2] for src in srcs) for srcs in per_column]


#: PostgreSQL types psycopg returns as dicts, lists or tuples (besides every array type).
_PG_CONTAINER_TYPES = frozenset({"json", "jsonb", "record", "hstore"})


def _scalar_columns(driver: Driver, description: Any) -> frozenset[int]:
    """Positions of result columns whose type never holds a dict or a list.

    sqlite3 (without converters, as the core opens it) returns only numbers, text, bytes
    and null. On PostgreSQL a column is scalar when psycopg knows its type as a built-in
    one that is not json, jsonb, a record, hstore, an array or a multirange; other columns
    (user-defined types included) are read whole for dicts and lists before masking.
    """
    if description is None:
        return frozenset()
    if driver == "sqlite":
        return frozenset(range(len(description)))
    try:
        from psycopg.postgres import types
    except ImportError:
        return frozenset()
    scalar: set[int] = set()
    for j, d in enumerate(description):
        oid = getattr(d, "type_code", None)
        info = types.get(oid) if isinstance(oid, int) else None
        if (
            info is not None
            and info.oid == oid
            and info.name not in _PG_CONTAINER_TYPES
            and not info.name.endswith("multirange")
        ):
            scalar.add(j)
    return frozenset(scalar)


def _relabelled(description: Any, columns: list[str], labels: list[str]) -> Any:
    """``description`` with its column names replaced by ``labels`` (itself when equal)."""
    if description is None or labels == columns:
        return description
    return tuple(
        ColumnDescription(label, *(tuple(d)[1:7] + (None,) * 6)[:6])
        for label, d in zip(labels, description, strict=True)
    )


def _blocked(decision: Decision, scope: Scope) -> StatementBlocked:
    reasons = [r for r in decision.reasons if r.action == "block"] or list(decision.reasons)
    first = reasons[0] if reasons else Reason("unknown", "block", "blocked")
    cls = ScopeViolation if first.rule in SCOPE_RULES else StatementBlocked
    return cls(
        f"statement blocked in scope {scope.name!r} by rule {first.rule}: {first.message}",
        scope=scope.name,
        reasons=reasons,
    )


def _approval_error(
    cls: type[ApprovalRequired], request_id: str, decision: Decision, scope: Scope, state: str
) -> ApprovalRequired:
    why = "; ".join(f"{r.rule}: {r.message}" for r in decision.reasons if r.action == "approve")
    if cls is ApprovalRequired:
        text = (
            f"statement in scope {scope.name!r} {state} approval request {request_id} ({why}); "
            f"approve it with `lgpd-tasks approvals approve {request_id}` or from the "
            "orchestrator's LGPD page, then run the task again"
        )
    else:
        text = (
            f"approval request {request_id} for this statement in scope {scope.name!r} was {state}"
        )
    return cls(
        text,
        scope=scope.name,
        request_id=request_id,
        fingerprint=decision.fingerprint,
        reasons=decision.reasons,
    )


def _recent(moment: str | None, ttl: timedelta) -> bool:
    return moment is not None and moment > isotime(utcnow() - ttl)


def _describe_parameters(
    parameters: Any, many: bool, mask: Callable[[str], str]
) -> dict[str, Any] | None:
    """What kind of parameters came with the statement; never their values.

    Named parameters are listed by name, each through ``mask``: a caller may key a
    mapping by a personal value (``{"maria@x.com": 1}``) as easily as by ``cpf``.
    """
    if parameters is None:
        return None
    if many:
        return {"batches": len(parameters)}
    if isinstance(parameters, Mapping):
        return {"named": sorted(mask(str(k)) for k in parameters)}
    try:
        return {"positional": len(parameters)}
    except TypeError:
        return {"positional": 1}


def _identity_details(identity: TaskIdentity) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if identity.map_index is not None:
        data["map_index"] = identity.map_index
    if identity.mapping_key is not None:
        data["mapping_key"] = identity.mapping_key
    if identity.partition is not None:
        data["partition"] = identity.partition
    if identity.user is not None:
        data["user"] = identity.user
    data.update(identity.extra)
    return data


def connect(
    url: str,
    *,
    policy: Policy | str | os.PathLike[str],
    scope: str | Scope,
    identity: TaskIdentity,
    audit: str | AuditStore,
    approvals: ApprovalStore | None = None,
    mask_results: bool = True,
    broker: CredentialBroker | None = None,
) -> GuardedConnection:
    """Open a guarded connection to ``url`` (``sqlite:///file.db`` or ``postgresql://...``).

    ``policy`` is a loaded :class:`Policy` or a policy file path; ``scope`` a scope name or a
    (possibly narrowed) :class:`Scope`; ``audit`` the audit store or its URL.

    The login comes from ``broker`` or, by default, from the broker the policy's
    ``credentials:`` section names: with ``postgres_role`` the connection logs in as a fresh
    role that holds exactly the scope's grants, and the role is revoked on close. ``url``
    is then the administrator's URL, which the connection itself never uses.
    """
    loaded = policy if isinstance(policy, Policy) else load_policy(policy)
    bound = loaded.scope(scope) if isinstance(scope, str) else scope
    store = audit if isinstance(audit, AuditStore) else AuditStore.from_url(audit)
    store.ensure_ready()
    masker = Masker.from_policy(loaded) if mask_results else None
    opened = open_scoped(url, policy=loaded, scope=bound, identity=identity, broker=broker)
    try:
        return GuardedConnection(
            opened.raw,
            driver=opened.driver,
            policy=loaded,
            scope=bound,
            identity=identity,
            audit=store,
            approvals=approvals,
            masker=masker,
            role=opened.role,
            on_close=opened.revoke,
            target=redact_url(url),
        )
    except BaseException:
        opened.discard()
        raise


@dataclass
class ScopedDbapi:
    """A driver connection logged in with a task attempt's credential, and how to revoke it.

    ``revoke`` gives the credential back (drops a role-broker role) and may be called more
    than once; hand it to :class:`GuardedConnection` as ``on_close``. The credential's
    password stays inside: ``repr`` shows the role only.
    """

    driver: Driver
    raw: Any = field(repr=False)
    credential: ScopedCredential
    _release: Callable[[], None] = field(repr=False)
    _released: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def role(self) -> str | None:
        """The database role the connection logged in as (``None`` for the static broker)."""
        return self.credential.role

    def revoke(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._release()

    def discard(self) -> None:
        """Close the driver connection and revoke: for when it never got wrapped."""
        try:
            self.raw.close()
        finally:
            self.revoke()


def open_scoped(
    url: str,
    *,
    policy: Policy,
    scope: Scope,
    identity: TaskIdentity,
    broker: CredentialBroker | None = None,
    opener: Callable[[str], tuple[Driver, Any]] | None = None,
) -> ScopedDbapi:
    """Issue a credential for ``identity`` in ``scope`` and open a driver connection with it.

    The broker is ``broker`` (held by the caller, who closes it) or, by default, one built
    from the policy's ``credentials:`` section for ``url`` and closed on revoke. With
    ``postgres_role`` the connection logs in as a fresh role holding exactly the scope's
    grants; ``url`` then serves the broker (see :func:`broker_from_policy`). ``opener``
    opens the driver connection for the credential's URL (default :func:`open_dbapi`);
    orchestrator integrations pass their own to keep their connection options. If opening
    fails, the credential is revoked before the error propagates.

    This is what :func:`connect` uses; integrations that build their own
    :class:`GuardedConnection` use it too, passing ``role=opened.role`` and
    ``on_close=opened.revoke``.
    """
    owned = broker is None
    chosen = broker_from_policy(policy, url) if broker is None else broker
    try:
        credential = chosen.issue(identity, scope)
    except BaseException:
        if owned and isinstance(chosen, PostgresRoleBroker):
            chosen.close()
        raise

    def release() -> None:
        try:
            chosen.revoke(credential)
        finally:
            if owned and isinstance(chosen, PostgresRoleBroker):
                chosen.close()

    try:
        driver, raw = (opener or open_dbapi)(credential.url)
    except BaseException:
        release()
        raise
    return ScopedDbapi(driver=driver, raw=raw, credential=credential, _release=release)


def open_dbapi(url: str) -> tuple[Driver, Any]:
    """Open the driver's own connection for ``url``; wrap it in a GuardedConnection.

    This is the one place the core opens ``sqlite3`` and psycopg connections; the
    orchestrator integrations use it when they build a GuardedConnection themselves.
    """
    parsed = parse_db_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ":memory:"
        if database != ":memory:" and not Path(database).parent.exists():
            raise UsageError(f"no folder for the SQLite database {database!r}")
        if database != ":memory:" and Path(database).is_dir():
            raise UsageError(f"the SQLite database {database!r} is a folder, not a file")
        try:
            return "sqlite", sqlite3.connect(database)
        except sqlite3.Error as err:
            raise StatementFailed(
                f"cannot open the SQLite database {database!r}: {err}",
                error_class=type(err).__name__,
                sqlstate=None,
            ) from None
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the postgres extra is missing
        raise LgpdError(
            "PostgreSQL needs the 'postgres' extra: pip install 'lgpd-tasks[postgres]'"
        ) from None
    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return "postgres", psycopg.connect(conninfo, connect_timeout=10)
    except psycopg.Error as err:
        raise StatementFailed(
            f"cannot connect to {redact_url(url)}: {str(err).strip().splitlines()[0]}",
            error_class=type(err).__name__,
            sqlstate=getattr(err, "sqlstate", None),
        ) from None
