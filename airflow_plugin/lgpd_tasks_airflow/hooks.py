"""Guarded DB-API hooks: the connection's own Airflow hook, with every statement guarded.

:func:`guard_hook` turns the hook an Airflow connection gives (``SqliteHook``,
``PostgresHook``) into a guarded one of a subclass made on the fly, so every hook method
that goes through ``get_conn()`` — ``run``, ``get_records``, ``get_first``, ``get_df``,
``insert_rows`` — talks to a :class:`~lgpd_tasks.connection.GuardedConnection` wrapping
the hook's own DB-API connection. Paths that would bypass the guard (a SQLAlchemy engine,
polars, ``COPY`` to files) are refused.

When the policy says ``credentials: {broker: postgres_role}``, each connection logs in as a
fresh role issued for the task attempt and its scope (see :mod:`lgpd_tasks_airflow.brokers`)
instead of the Airflow connection's login, and the role is revoked when it closes.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.common.sql.hooks import handlers
from airflow.providers.common.sql.hooks.sql import DbApiHook

from lgpd_tasks.approvals import ApprovalStore
from lgpd_tasks.audit import AuditStore
from lgpd_tasks.connection import Driver, GuardedConnection, open_scoped
from lgpd_tasks.errors import StatementBlocked
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker
from lgpd_tasks.policy import Policy, Scope
from lgpd_tasks_airflow.brokers import role_connection, target_url, worker_broker
from lgpd_tasks_airflow.runtime import LgpdConfigurationError, translate_errors

if TYPE_CHECKING:
    import pandas as pd

_DRIVERS: dict[str, Driver] = {"sqlite": "sqlite", "postgres": "postgres", "postgresql": "postgres"}


class AirflowGuardedConnection(GuardedConnection):
    """A GuardedConnection that lets the Airflow hook set autocommit on the real connection."""

    def __init__(self, raw: Any, **kwargs: Any) -> None:
        super().__init__(raw, **kwargs)
        self._dbapi = raw

    @property
    def autocommit(self) -> bool:
        return bool(getattr(self._dbapi, "autocommit", False))

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self._dbapi.autocommit = value


@dataclass(frozen=True)
class GuardSettings:
    """Everything a guarded connection is bound to: policy, scope, identity and stores."""

    policy: Policy
    scope: Scope
    identity: TaskIdentity
    audit: AuditStore
    masker: Masker | None

    @property
    def role_broker(self) -> bool:
        """Whether connections log in as per-attempt PostgreSQL roles (``postgres_role``)."""
        return self.policy.credentials.broker == "postgres_role"

    def wrap(
        self,
        raw: Any,
        driver: Driver,
        target: str,
        *,
        role: str | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> AirflowGuardedConnection:
        return AirflowGuardedConnection(
            raw,
            driver=driver,
            policy=self.policy,
            scope=self.scope,
            identity=self.identity,
            audit=self.audit,
            approvals=ApprovalStore(self.audit),
            masker=self.masker,
            target=target,
            role=role,
            on_close=on_close,
        )


def driver_for(hook: DbApiHook) -> Driver:
    """The GuardedConnection driver for a hook's connection type; others are refused."""
    kind = str(getattr(hook, "conn_type", "") or "").lower()
    driver = _DRIVERS.get(kind)
    if driver is None:
        raise LgpdConfigurationError(
            f"lgpd-tasks guards sqlite and postgres connections; connection "
            f"{hook.get_conn_id()!r} is of type {kind or 'unknown'!r}"
        )
    return driver


class GuardedHookMixin:
    """Put before a ``DbApiHook`` subclass: its connections are guarded, its logs hold no values."""

    _lgpd_guard: GuardSettings
    _lgpd_driver: Driver

    # -- the seam ------------------------------------------------------------------------

    def get_conn(self) -> AirflowGuardedConnection:
        hook = cast("DbApiHook", self)
        target = f"airflow-conn:{hook.get_conn_id()}"
        settings = self._lgpd_guard
        if settings.role_broker:
            return self._scoped_conn(settings, target)
        raw = super().get_conn()  # type: ignore[misc]
        try:
            return settings.wrap(raw, self._lgpd_driver, target)
        except BaseException:
            raw.close()
            raise

    def _scoped_conn(self, settings: GuardSettings, target: str) -> AirflowGuardedConnection:
        """A connection logged in as a fresh role for this task attempt, revoked on close."""
        hook = cast("DbApiHook", self)
        if self._lgpd_driver != "postgres":
            raise LgpdConfigurationError(
                f"the policy's credentials.broker is postgres_role but connection "
                f"{hook.get_conn_id()!r} is not PostgreSQL"
            )
        with translate_errors():
            url = target_url(hook)
            opened = open_scoped(
                url,
                policy=settings.policy,
                scope=settings.scope,
                identity=settings.identity,
                broker=worker_broker(settings.policy, url),
                # the hook's own get_conn, so the connection's extras (sslmode...) still apply
                opener=lambda login: ("postgres", self._open_as(login)),
            )
            try:
                return settings.wrap(
                    opened.raw, "postgres", target, role=opened.role, on_close=opened.revoke
                )
            except BaseException:
                opened.discard()
                raise

    def _open_as(self, login_url: str) -> Any:
        """The hook class's own ``get_conn``, logged in with ``login_url``'s user and password."""
        hook = cast("DbApiHook", self)
        clone = copy.copy(hook)
        clone._connection = role_connection(hook.connection, login_url)
        return cast("GuardedHookMixin", clone)._own_conn()

    def _own_conn(self) -> Any:
        return super().get_conn()  # type: ignore[misc]

    @property
    def lgpd_identity(self) -> TaskIdentity:
        return self._lgpd_guard.identity

    def rebind(self, settings: GuardSettings) -> None:
        """Guard later connections with ``settings`` (another task instance, same hook)."""
        self._lgpd_guard = settings

    # -- running statements (common-sql's run, without logging values) -------------------

    def run(
        self,
        sql: str | Iterable[str],
        autocommit: bool = False,
        parameters: Iterable[Any] | Mapping[str, Any] | None = None,
        handler: Callable[[Any], Any] | None = None,
        split_statements: bool = False,
        return_last: bool = True,
    ) -> Any:
        hook = cast("DbApiHook", self)
        hook.descriptions = []
        if isinstance(sql, str):
            if split_statements:
                sql_list = hook.split_sql_string(sql=sql, strip_semicolon=hook.strip_semicolon)
            else:
                sql_list = [sql] if sql.strip() else []
        else:
            sql_list = list(sql)
        if not sql_list:
            raise ValueError("List of SQL statements is empty")
        single = handlers.return_single_query_results(sql, return_last, split_statements)
        last_result: Any = None
        last_description: Any = None
        results: list[Any] = []
        with translate_errors(), hook._create_autocommit_connection(autocommit) as conn:
            with closing(conn.cursor()) as cur:
                for statement in sql_list:
                    self._run_command(cur, statement, parameters)
                    if handler is not None:
                        result = hook._make_common_data_structure(handler(cur))
                        if single:
                            last_result, last_description = result, cur.description
                        else:
                            results.append(result)
                            hook.descriptions.append(cur.description)
            if not hook.get_autocommit(conn):
                conn.commit()
        if handler is None:
            return None
        if single:
            hook.descriptions = [last_description]
            return last_result
        return results

    def _run_command(self, cur: Any, sql_statement: str, parameters: Any) -> None:
        if parameters:
            if isinstance(parameters, list):
                parameters = tuple(parameters)
            cur.execute(sql_statement, parameters)
        else:
            cur.execute(sql_statement)
        decision = cur.connection.last_decision
        hook = cast("DbApiHook", self)
        if decision is not None:
            hook.log.info(
                "Ran statement [%s, scope %s]: %s",
                decision.action,
                self._lgpd_guard.scope.name,
                decision.normalized,
            )
        rows = handlers.get_row_count(cur)
        if rows is not None:
            hook.log.info("Rows affected: %s", rows)

    # -- reading -------------------------------------------------------------------------

    def get_records(
        self, sql: str | list[str], parameters: Iterable[Any] | Mapping[str, Any] | None = None
    ) -> Any:
        return self.run(sql=sql, parameters=parameters, handler=handlers.fetch_all_handler)

    def get_first(
        self, sql: str | list[str], parameters: Iterable[Any] | Mapping[str, Any] | None = None
    ) -> Any:
        return self.run(sql=sql, parameters=parameters, handler=handlers.fetch_one_handler)

    def get_df(
        self,
        sql: str | list[str],
        parameters: Any = None,
        *,
        df_type: str = "pandas",
        **kwargs: Any,
    ) -> pd.DataFrame:
        """A masked pandas DataFrame of the query's result (one statement)."""
        if df_type != "pandas" or kwargs:
            raise LgpdConfigurationError(
                "a guarded hook returns pandas DataFrames only, without read_sql options "
                f"(got df_type={df_type!r}, options {sorted(kwargs)})"
            )
        if not isinstance(sql, str):
            raise LgpdConfigurationError("get_df on a guarded hook takes one statement")
        with translate_errors(), closing(self.get_conn()) as conn:
            return conn.query_df(sql, parameters)

    def get_pandas_df(self, sql: str | list[str], parameters: Any = None, **kwargs: Any) -> Any:
        return self.get_df(sql, parameters, **kwargs)

    def get_df_by_chunks(
        self,
        sql: str | list[str],
        parameters: Any = None,
        *,
        chunksize: int,
        df_type: str = "pandas",
        **kwargs: Any,
    ) -> Iterator[pd.DataFrame]:
        """Masked pandas DataFrames of ``chunksize`` rows (one statement).

        common-sql's version goes through ``pandas.read_sql``, which wraps a refusal in its
        own error quoting the statement with its literals, so Airflow would retry it.
        """
        if df_type != "pandas" or kwargs or not isinstance(sql, str):
            raise LgpdConfigurationError(
                "get_df_by_chunks on a guarded hook takes one statement and returns pandas "
                f"DataFrames, without read_sql options (got df_type={df_type!r}, "
                f"options {sorted(kwargs)})"
            )
        return self._chunks(sql, parameters, chunksize)

    def get_pandas_df_by_chunks(
        self, sql: str | list[str], parameters: Any = None, *, chunksize: int, **kwargs: Any
    ) -> Iterator[pd.DataFrame]:
        return self.get_df_by_chunks(sql, parameters, chunksize=chunksize, **kwargs)

    def _chunks(self, sql: str, parameters: Any, chunksize: int) -> Iterator[pd.DataFrame]:
        import pandas as pd

        with (
            translate_errors(),
            closing(self.get_conn()) as conn,
            closing(conn.execute(sql, parameters)) as cur,
        ):
            columns = [str(d[0]) for d in cur.description or ()]
            while rows := cur.fetchmany(chunksize):  # masked row by row
                yield pd.DataFrame.from_records(rows, columns=columns, coerce_float=False)

    def insert_rows(self, *args: Any, **kwargs: Any) -> None:
        with translate_errors():
            super().insert_rows(*args, **kwargs)  # type: ignore[misc]

    # -- paths that would bypass the guard -----------------------------------------------

    def get_sqlalchemy_engine(self, engine_kwargs: Any = None) -> Any:
        self._bypass("a SQLAlchemy engine")

    def copy_expert(self, sql: str, filename: str) -> None:
        self._bypass("COPY through copy_expert")

    def bulk_load(self, table: str, tmp_file: str) -> None:
        self._bypass("bulk_load")

    def bulk_dump(self, table: str, tmp_file: str) -> None:
        self._bypass("bulk_dump")

    def _bypass(self, what: str) -> Any:
        with translate_errors():
            raise StatementBlocked(
                f"{what} would bypass the lgpd-tasks guard; use run/get_records/get_df",
                scope=self._lgpd_guard.scope.name,
            )


_CLASSES: dict[type[DbApiHook], type[DbApiHook]] = {}
_CLASSES_LOCK = threading.Lock()


def guarded_class(base: type[DbApiHook]) -> type[DbApiHook]:
    """``Guarded<Hook>``: the mixin in front of the hook's own class (made once per class)."""
    with _CLASSES_LOCK:
        cls = _CLASSES.get(base)
        if cls is None:
            cls = cast(
                "type[DbApiHook]",
                type(f"Guarded{base.__name__}", (GuardedHookMixin, base), {}),
            )
            _CLASSES[base] = cls
        return cls


def guard_hook(hook: DbApiHook, settings: GuardSettings) -> DbApiHook:
    """Make ``hook`` guarded in place and return it (idempotent).

    The hook keeps its connection settings; only its class changes to the guarded subclass.
    """
    if isinstance(hook, GuardedHookMixin):
        return hook
    driver = driver_for(hook)
    hook.__class__ = guarded_class(type(hook))
    guarded = cast("GuardedHookMixin", hook)
    guarded._lgpd_guard = settings
    guarded._lgpd_driver = driver
    hook.log_sql = False
    return hook
