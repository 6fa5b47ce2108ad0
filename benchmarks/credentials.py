"""Per-attempt cost of a scoped PostgreSQL role (issue + connect + revoke) and of sweeping orphans.

    python benchmarks/credentials.py [ATTEMPTS] [ORPHANS]

Needs the PostgreSQL server of LGPD_TEST_POSTGRES_DSN (default
postgresql://postgres@127.0.0.1:5432/test). Creates and drops its own schema and roles.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from lgpd_tasks.credentials import PostgresRoleBroker, libpq_url
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy

DSN = os.environ.get("LGPD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _timed(fn: Callable[[int], None], n: int) -> list[float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1000)
    return times


def _row(label: str, times: list[float], base: float | None = None) -> None:
    median = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    ratio = f"{median / base:6.2f}x" if base else "   1.00x"
    print(f"  {label:<44} median {median:7.2f} ms   p95 {p95:7.2f} ms   {ratio}")


def main() -> None:
    attempts = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    orphans = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    prefix = f"lgpd_b{uuid.uuid4().hex[:6]}_"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(
            f'CREATE SCHEMA "{schema}"; '
            f'CREATE TABLE "{schema}".customers (id serial PRIMARY KEY, nome text, cpf text, '
            f"cidade text); "
            f'CREATE TABLE "{schema}".summary (cidade text, clientes int, receita numeric)'
        )
    policy = Policy.from_dict(
        {
            "version": 1,
            "dialect": "postgres",
            "purposes": {"r": {"legal_basis": "legitimate_interest", "retention": "30d"}},
            "scopes": {
                "r.load": {
                    "purpose": "r",
                    "read": {f"{schema}.customers": ["id", "nome", "cidade"]},
                    "write": {f"{schema}.summary": ["cidade", "clientes"]},
                }
            },
        }
    )
    scope = policy.scope("r.load")
    broker = PostgresRoleBroker(DSN, role_prefix=prefix)
    libpq = libpq_url(DSN)
    try:
        print(f"PostgreSQL at {DSN.split('@')[-1]}; {attempts} attempts, {orphans} orphans")

        def plain(_: int) -> None:
            with psycopg.connect(libpq) as conn:
                conn.execute("SELECT 1").fetchone()

        def scoped(i: int) -> None:
            ident = TaskIdentity("airflow", "bench", "load", run_id="r", attempt=i)
            cred = broker.issue(ident, scope)
            with psycopg.connect(libpq_url(cred.url)) as conn:
                conn.execute("SELECT 1").fetchone()
            broker.revoke(cred)

        issued: list[object] = []

        def issue_only(i: int) -> None:
            ident = TaskIdentity("airflow", "bench", "load", run_id="i", attempt=i)
            issued.append(broker.issue(ident, scope))

        def revoke_only(i: int) -> None:
            broker.revoke(issued[i])  # type: ignore[arg-type]

        plain(0)
        scoped(0)  # warm the broker's connection and the owner role
        base = _timed(plain, attempts)
        full = _timed(scoped, attempts)
        issue_times = _timed(issue_only, attempts)
        revoke_times = _timed(revoke_only, attempts)
        base_median = statistics.median(base)
        print("per task attempt:")
        _row("connect + SELECT 1 as the shared login", base)
        _row("issue + connect + SELECT 1 + revoke", full, base_median)
        _row("  issue alone", issue_times, base_median)
        _row("  revoke alone", revoke_times, base_median)
        overhead = statistics.median(full) - base_median
        print(f"  overhead of a scoped role per attempt: {overhead:.2f} ms (target < 20 ms)")

        for label, one_by_one in (("sweep (batched drops)", False), ("revoke one by one", True)):
            for i in range(orphans):
                ident = TaskIdentity("airflow", "bench", "crashed", run_id="o", attempt=i)
                broker.issue(ident, scope, ttl=timedelta(seconds=1))
            start = time.perf_counter()
            if one_by_one:
                for role in broker.list_roles():
                    broker.revoke_role(role.name)
                dropped = orphans
            else:
                report = broker.sweep(now=datetime.now(UTC) + timedelta(minutes=1))
                dropped = len(report.dropped)
            elapsed = time.perf_counter() - start
            if not one_by_one:
                sweep_time = elapsed
            print(
                f"{label:<22} over {orphans} orphans: {elapsed:6.2f} s "
                f"({elapsed / max(dropped, 1) * 1000:.2f} ms per role, "
                f"{elapsed / sweep_time:.2f}x the sweep)"
            )
        assert broker.list_roles() == [], "orphans left behind"
    finally:
        broker.sweep(now=datetime.now(UTC) + timedelta(days=1))
        broker.close()
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
