"""SQLAlchemy engines for the audit store, with the locking each backend needs for one chain."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import SingletonThreadPool

from lgpd_tasks import dburl
from lgpd_tasks.dburl import redact_url as redact_url  # re-exported
from lgpd_tasks.errors import AuditStoreUnusable

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def parse_db_url(url: str) -> URL:
    """A SQLAlchemy URL with the drivers lgpd-tasks uses (sqlite3, psycopg 3).

    A malformed URL (a port that is not a number...) or an unsupported database raises
    :class:`AuditStoreUnusable`: a configuration error, which retrying cannot mend.

    >>> parse_db_url("postgresql://app@127.0.0.1:5432/test").drivername
    'postgresql+psycopg'
    >>> parse_db_url("sqlite:///audit.db").database
    'audit.db'
    """
    parsed = dburl.parse_url(
        url, AuditStoreUnusable, example="postgresql://user@host:5432/db or sqlite:///file.db"
    )
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise AuditStoreUnusable(
            f"unsupported database {backend!r} in {redact_url(url)!r}: use sqlite:/// or postgresql://"
        )
    return parsed


def sqlite_in_memory(url: URL) -> bool:
    """Whether a SQLite URL names an in-memory database (gone when the process ends).

    >>> from sqlalchemy.engine import make_url
    >>> [sqlite_in_memory(make_url(u)) for u in ("sqlite://", "sqlite:///:memory:",
    ...     "sqlite:///file:a?mode=memory&uri=true", "sqlite:///audit.db")]
    [True, True, True, False]
    """
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or url.query.get("mode") == "memory"
        or "mode=memory" in database
    )


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names (``file:`` URIs too); ``None`` in memory or not SQLite.

    >>> from sqlalchemy.engine import make_url
    >>> sqlite_file(make_url("sqlite:///file:/tmp/a%20b.db?uri=true"))
    PosixPath('/tmp/a b.db')
    """
    if url.get_backend_name() != "sqlite" or sqlite_in_memory(url):
        return None
    database = url.database or ""
    if url.query.get("uri") == "true" and database.startswith("file:"):
        database = unquote(urlsplit(database).path)
    return Path(database)


def refuse_in_memory(url: URL, text: str | None = None) -> None:
    """Refuse an in-memory SQLite audit store: its records would vanish with the process.

    ``text`` is the URL as the user wrote it, shown as is when it holds no password.
    """
    if sqlite_in_memory(url):
        shown = text if text is not None and url.password is None else redact_url(url)
        raise AuditStoreUnusable(
            f"audit store {shown} is an in-memory SQLite database, whose records "
            "vanish when the process ends: give a file (sqlite:///audit.db) or PostgreSQL"
        )


def get_engine(url: str) -> Engine:
    """One engine per URL per process (engines pool connections and are thread-safe)."""
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _create(parse_db_url(url))
            _ENGINES[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (after a fork, or at the end of tests)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def _create(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        # a writer waits this long for another writer's lock (override with ?timeout=SECONDS)
        connect_args = {} if "timeout" in url.query else {"timeout": 30.0}
        # an in-memory database lives as long as its connection: one per thread, kept (the
        # pool SQLAlchemy picks for it itself, named, as SQLAlchemy 2.1 asks)
        pool = {"poolclass": SingletonThreadPool} if sqlite_in_memory(url) else {}
        engine = create_engine(url, connect_args=connect_args, **pool)
        _sqlite_writer_locking(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def _sqlite_writer_locking(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN; the chain needs the write lock taken
    # before the head is read, so every transaction starts with BEGIN IMMEDIATE.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
