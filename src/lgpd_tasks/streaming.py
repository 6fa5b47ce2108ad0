"""A PostgreSQL result streamed in chunks and converted a chunk at a time.

psycopg's ``Cursor.stream(size=...)`` receives the result in chunks (libpq 17's chunked rows
mode) but yields it row by row, one generator step per row: about 0.2 µs a row, 20 ms of a
task's time for 100,000 rows. :func:`stream_rows` drives the same protocol steps psycopg's
``stream()`` is built from and converts each chunk with one call of the cursor's loaders
(``Transformer.load_rows``, the C loop ``fetchall`` uses). Those steps are psycopg's own
private generators: with a psycopg that lacks them, :func:`stream_rows` is ``stream()``.
"""

from __future__ import annotations

import logging
from typing import Any

_log = logging.getLogger(__name__)

#: What :func:`stream_rows` uses of a psycopg cursor beyond its public API (``_tx``, a
#: ``psycopg.adapt.Transformer``, and ``_make_row`` are set once a query starts: looked up on
#: the cursor's class).
_STEPS = ("_stream_send_gen", "_stream_fetchone_gen", "_conn", "_tx", "_make_row")


def stream_rows(cursor: Any, sql: str, parameters: Any, size: int) -> list[Any]:
    """Every row of ``sql``'s result on the psycopg ``cursor``, fetched in chunks of ``size``
    rows: what ``list(cursor.stream(sql, parameters, size=size))`` returns.

    As ``stream()`` does, a failure or interrupt while rows arrive cancels the query the
    server is still running and reads its end, so the connection can roll back.
    """
    from psycopg import adapt

    usable = all(hasattr(type(cursor), step) for step in _STEPS) and hasattr(
        adapt.Transformer, "load_rows"
    )
    if not usable or cursor.connection.pgconn.pipeline_status:
        return list(cursor.stream(sql, parameters, size=size))

    conn = cursor._conn
    rows: list[Any] = []
    with conn.lock:
        first = True
        try:
            conn.wait(cursor._stream_send_gen(sql, parameters, binary=None, size=size))
            while result := conn.wait(cursor._stream_fetchone_gen(first)):
                rows.extend(cursor._tx.load_rows(0, result.ntuples, cursor._make_row))
                first = False
        except BaseException:
            rows.clear()  # the traceback keeps this frame: it must not keep unmasked rows
            raise
        finally:
            cancel_running_query(conn)
    return rows


def cancel_running_query(conn: Any) -> None:
    """Stop the query the server may still be running on the psycopg ``conn`` and read its
    end (its remaining chunks, its cancellation error), so the connection can roll back."""
    from psycopg import pq

    if conn.info.transaction_status != pq.TransactionStatus.ACTIVE:
        return
    try:
        conn.cancel_safe(timeout=5.0)
    except Exception as err:  # the server may have ended the query meanwhile: read on
        _log.warning("lgpd-tasks: cancelling the interrupted query failed (%s)", type(err).__name__)
    try:
        while conn.pgconn.get_result() is not None:
            pass
    except Exception as err:
        _log.warning(
            "lgpd-tasks: reading the cancelled query's end failed (%s)", type(err).__name__
        )
