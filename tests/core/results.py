"""Every way a guarded connection hands out a result, for tests that must cover them all."""

from __future__ import annotations

from typing import Any

from lgpd_tasks.connection import GuardedConnection

#: fetchall, fetchmany, fetchone, iteration and query_df.
FETCH_WAYS = ("fetchall", "fetchmany", "fetchone", "iterate", "query_df")


def fetch(conn: GuardedConnection, sql: str, how: str) -> Any:
    """Run ``sql`` and fetch its whole result the ``how`` way (one of :data:`FETCH_WAYS`)."""
    if how == "query_df":
        return conn.query_df(sql)
    cur = conn.execute(sql)
    if how == "fetchall":
        return cur.fetchall()
    if how == "iterate":
        return list(cur)
    rows: list[Any] = []
    while batch := (cur.fetchmany(10) if how == "fetchmany" else [cur.fetchone()]):
        if batch == [None]:
            break
        rows.extend(batch)
    return rows
