"""Guard throughput (analyse + decide over the SQL corpus, cold and warm) and the cost of a
GuardedConnection against the bare driver (trivial SELECT, 100k-row SELECT; SQLite and
PostgreSQL when reachable), and row-by-row fetchone over three text columns. Prints
microseconds per statement or row and guarded/bare ratios.

    .venv/bin/python benchmarks/guard.py
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgpd_tasks.identity import TaskIdentity  # noqa: E402
from lgpd_tasks.policy import Policy  # noqa: E402
from lgpd_tasks.sql import check, clear_cache  # noqa: E402
from tests.core.sql_corpus import cases, catalog, policy  # noqa: E402

ROWS = 100_000
POSTGRES_DSN = os.environ.get("LGPD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _best(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


# -- analyse + decide over the corpus ----------------------------------------------------
def guard_throughput() -> None:
    corpus = cases()
    work = [
        (c.sql, policy(c.policy_file).scope(c.scope), catalog() if c.use_catalog else None)
        for c in corpus
    ]

    def run_all() -> None:
        for sql, scope, cat in work:
            check(sql, scope, catalog=cat)

    def cold() -> None:
        clear_cache()
        run_all()

    cold_s = _best(cold, 3)
    run_all()
    warm_s = _best(run_all, 20)
    n = len(work)
    print(f"guard over the corpus ({n} statements)")
    print(
        f"  cold (cache cleared): {cold_s / n * 1e6:9.1f} µs/statement  {n / cold_s:10.0f} stmt/s"
    )
    print(
        f"  warm (cached)       : {warm_s / n * 1e6:9.1f} µs/statement  {n / warm_s:10.0f} stmt/s"
    )
    print(f"  cold/warm ratio     : {cold_s / warm_s:9.0f}x   (target: warm < 20 µs)")


# -- GuardedConnection vs the bare driver ------------------------------------------------
def _policy(dialect: str, table: str) -> Policy:
    return Policy.from_dict(
        {
            "version": 1,
            "dialect": dialect,
            "purposes": {"bench": {"legal_basis": "research", "retention": "1d"}},
            "scopes": {"bench.read": {"purpose": "bench", "read": {table: "*"}}},
        }
    )


def _guarded(url: str, dialect: str, table: str, audit: str, masked: bool) -> Any:
    """A GuardedConnection to ``url`` allowed to read ``table``, as the benchmark's task."""
    from lgpd_tasks.connection import connect

    return connect(
        url,
        policy=_policy(dialect, table),
        scope="bench.read",
        identity=TaskIdentity(orchestrator="bench", pipeline="bench", task="read"),
        audit=audit,
        mask_results=masked,
    )


def _compare(label: str, bare: Any, guarded: Any, table: str) -> None:
    trivial = "SELECT 1"
    big = f"SELECT id, cidade, total FROM {table}"

    def run(conn: Any, sql: str, times: int) -> Callable[[], None]:
        def go() -> None:
            for _ in range(times):
                cur = conn.cursor()
                cur.execute(sql)
                cur.fetchall()
                cur.close()

        return go

    for name, sql, times, repeat in (
        ("trivial SELECT", trivial, 200, 5),
        ("100k-row SELECT", big, 1, 5),
    ):
        run(guarded, sql, 1)()  # warm the guard's cache and the audit store
        b = _best(run(bare, sql, times), repeat)
        g = _best(run(guarded, sql, times), repeat)
        print(
            f"  {label:10s} {name:16s} bare {b / times * 1e3:9.3f} ms  "
            f"guarded {g / times * 1e3:9.3f} ms  ratio {g / b:6.2f}"
        )


def connection_overhead() -> None:
    """GuardedConnection vs the bare driver (audit on SQLite in a temporary folder)."""
    print("GuardedConnection vs bare driver (results unmasked / masked)")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.db"
        raw = sqlite3.connect(source)
        raw.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, cidade TEXT, total REAL)")
        raw.executemany(
            "INSERT INTO big VALUES (?, ?, ?)",
            ((i, f"cidade {i % 97}", i * 1.5) for i in range(ROWS)),
        )
        raw.commit()
        audit = f"sqlite:///{tmp}/audit.db"
        for masked in (False, True):
            guarded = _guarded(f"sqlite:///{source}", "sqlite", "big", audit, masked)
            _compare("sqlite" + (" m" if masked else ""), raw, guarded, "big")
            guarded.close()
        raw.close()

        try:
            import psycopg

            pg = psycopg.connect(POSTGRES_DSN, connect_timeout=3, autocommit=True)
        except Exception as err:  # the server is optional for a benchmark run
            print(f"  postgres   skipped: {type(err).__name__}")
            return
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        try:
            pg.execute(f'CREATE SCHEMA "{schema}"')
            pg.execute(
                f'CREATE TABLE "{schema}".big (id int PRIMARY KEY, cidade text, total float8)'
            )
            pg.execute(
                f"INSERT INTO \"{schema}\".big SELECT i, 'cidade ' || (i % 97), i * 1.5 "
                f"FROM generate_series(0, {ROWS - 1}) AS i"
            )
            for masked in (False, True):
                guarded = _guarded(POSTGRES_DSN, "postgres", f"{schema}.big", audit, masked)
                _compare("postgres" + (" m" if masked else ""), pg, guarded, f"{schema}.big")
                guarded.close()
        finally:
            pg.execute(f'DROP SCHEMA "{schema}" CASCADE')
            pg.close()


FETCHONE_ROWS = 2_000


def fetchone_cost() -> None:
    """fetchone row by row over three text columns with digits but no personal data, through
    a bare SQLite connection and a GuardedConnection (results unmasked / masked)."""
    sql = "SELECT descricao, cidade, obs FROM notas"
    print(f"fetchone over three text columns ({FETCHONE_ROWS} rows, SQLite)")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.db"
        raw = sqlite3.connect(source)
        raw.execute("CREATE TABLE notas (descricao TEXT, cidade TEXT, obs TEXT)")
        raw.executemany(
            "INSERT INTO notas VALUES (?, ?, ?)",
            (
                (f"produto {i}", f"cidade {i % 97}", f"entrega em {i % 28} dias")
                for i in range(FETCHONE_ROWS)
            ),
        )
        raw.commit()

        def rows(conn: Any) -> Callable[[], None]:
            def go() -> None:
                cur = conn.cursor()
                cur.execute(sql)
                while cur.fetchone() is not None:
                    pass
                cur.close()

            return go

        bare = _best(rows(raw), 5)
        print(f"  bare              {bare / FETCHONE_ROWS * 1e6:8.1f} µs/row")
        for masked in (False, True):
            guarded = _guarded(
                f"sqlite:///{source}", "sqlite", "notas", f"sqlite:///{tmp}/audit.db", masked
            )
            rows(guarded)()  # warm the guard's cache and the audit store
            g = _best(rows(guarded), 5)
            label = "guarded, masked " if masked else "guarded          "
            print(f"  {label}  {g / FETCHONE_ROWS * 1e6:8.1f} µs/row  ratio {g / bare:6.2f}")
            guarded.close()
        raw.close()


if __name__ == "__main__":
    guard_throughput()
    connection_overhead()
    fetchone_cost()
