"""HMAC-SHA256 tokens computed by polars-hash, when it is installed and worth importing.

hashlib costs five calls under the GIL per value (about 1 µs here); polars-hash hashes a
whole Arrow column in Rust in one call, about four times faster, with the same bytes.
Importing polars costs about as much as hashing :data:`IMPORT_AFTER` values the slow way,
so a process imports it only once it has hashed that many (including the batch at hand):
a short task never pays for the import, a long-running process (Dagster's in-process
executor, a code server, ``lgpd-tasks mask`` of a large file) soon gains. The caller
checks tokens of every batch against hashlib and turns the fast path off on a mismatch.

Installed with the ``fast`` extra: ``pip install 'lgpd-tasks[fast]'``.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa

#: Values a process hashes with hashlib before it imports polars (about 150 ms to import,
#: saving about 0.8 µs per value afterwards).
IMPORT_AFTER = 200_000

#: The fewest values one thread hashes: a large batch is cut into parts of at least this
#: many, hashed side by side on the process's CPUs (polars-hash releases the GIL).
PART_MIN = 16_384

_log = logging.getLogger(__name__)


class _State:
    hashed = 0
    modules: tuple[Any, Any] | None = None
    off = False
    workers: ThreadPoolExecutor | None = None
    lock = threading.Lock()


def tokens(
    key: str, messages: pa.Array, prefix: str, length: int, *, digits_after: str | None = None
) -> pa.Array | pa.ChunkedArray | None:
    """``prefix`` and the first ``length`` hex digits of HMAC-SHA256(``key``, message) for
    each message, as large strings; None when the fast path is off, not installed or not yet
    worth importing (the caller then uses hashlib).

    With ``digits_after``, ``messages`` are raw values (CPFs, phone numbers) and each message
    is ``digits_after`` followed by the value without its dots and dashes; None too when a
    value is not all ASCII digits without them (the caller's own normalisation decides).
    """
    if _State.off:
        return None
    if _State.modules is None:
        _State.hashed += len(messages)
        if _State.hashed < IMPORT_AFTER or not _load():
            return None
    modules = _State.modules
    assert modules is not None
    parts = _parts(len(messages))
    try:
        later = _submit(parts[1:], modules, key, messages, prefix, length, digits_after)
        start, size = parts[0]
        first = _hash(modules, key, messages.slice(start, size), prefix, length, digits_after)
        done = [first, *(part.result() for part in later)]
        hashed = [part for part in done if part is not None]
        if len(hashed) < len(done):
            return None
        return hashed[0] if len(hashed) == 1 else pa.chunked_array(hashed)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # any failure, a Rust panic too: hashlib instead
        # the type only: a message could quote the expression it ran
        turn_off(f"polars-hash failed ({type(error).__name__})")
        return None


def _hash(
    modules: tuple[Any, Any],
    key: str,
    messages: pa.Array,
    prefix: str,
    length: int,
    digits_after: str | None = None,
) -> pa.Array | None:
    pl, _ = modules  # polars_hash adds the ``chash`` namespace to every expression
    message = pl.col("m")
    checks = []
    if digits_after is not None:
        digits = message.str.replace_all(".", "", literal=True).str.replace_all(
            "-", "", literal=True
        )
        message = pl.lit(digits_after) + digits
        checks.append(digits.str.contains("^[0-9]+$").all().alias("ok"))
    token = pl.lit(prefix) + message.chash.hmac_sha256(key=key).str.slice(0, length)
    # one lazy query: the digits are computed once for the message and the check
    query = pl.DataFrame({"m": pl.from_arrow(messages)}).lazy().select(token.alias("t"), *checks)
    done = query.collect()
    if checks and not done["ok"].all():
        return None
    tokens: pa.Array = done["t"].to_arrow()
    return tokens.cast(pa.large_string())


def _submit(
    parts: list[tuple[int, int]],
    modules: tuple[Any, Any],
    key: str,
    messages: pa.Array,
    prefix: str,
    length: int,
    digits_after: str | None,
) -> list[Future[pa.Array | None]]:
    """``parts`` hashed on the worker threads; on this thread once the interpreter is
    shutting down (its pools take no more work)."""
    later: list[Future[pa.Array | None]] = []
    for start, size in parts:
        args = (modules, key, messages.slice(start, size), prefix, length, digits_after)
        try:
            later.append(_workers().submit(_hash, *args))
        except RuntimeError:  # "cannot schedule new futures after interpreter shutdown"
            done: Future[pa.Array | None] = Future()
            done.set_result(_hash(*args))
            later.append(done)
    return later


def _parts(count: int) -> list[tuple[int, int]]:
    """``(start, size)`` of each part ``count`` values are hashed in: one per CPU at most,
    none smaller than :data:`PART_MIN`."""
    many = max(1, min(_cpus(), count // PART_MIN))
    size, extra = divmod(count, many)
    parts, start = [], 0
    for i in range(many):
        part = size + (1 if i < extra else 0)
        parts.append((start, part))
        start += part
    return parts


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _workers() -> ThreadPoolExecutor:
    """The threads that hash the parts after the first (made once per process)."""
    with _State.lock:
        if _State.workers is None:
            _State.workers = ThreadPoolExecutor(
                max_workers=max(1, _cpus() - 1), thread_name_prefix="lgpd-hmac"
            )
        return _State.workers


def turn_off(why: str) -> None:
    """Hash with hashlib from now on in this process."""
    if not _State.off:
        _State.off = True
        _log.warning("HMAC tokens: %s; hashing with hashlib from now on", why)


def _forked() -> None:
    """In a child forked after polars started its threads, polars may deadlock: the child
    hashes with hashlib (a child of a process that never loaded polars may still load it)."""
    if _State.modules is not None:
        _State.modules = None
        _State.off = True
    _State.workers = None  # its threads are not in the child
    _State.lock = threading.Lock()


os.register_at_fork(after_in_child=_forked)


def _load() -> bool:
    try:
        _State.modules = (importlib.import_module("polars"), importlib.import_module("polars_hash"))
    except ImportError:
        _State.off = True  # not installed: the ``fast`` extra is optional
        return False
    except Exception as error:  # a broken install: hashlib
        turn_off(f"polars-hash could not be imported ({type(error).__name__})")
        return False
    return True
