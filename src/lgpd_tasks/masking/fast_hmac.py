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
from typing import Any

import pyarrow as pa

#: Values a process hashes with hashlib before it imports polars (about 150 ms to import,
#: saving about 0.8 µs per value afterwards).
IMPORT_AFTER = 200_000

_log = logging.getLogger(__name__)


class _State:
    hashed = 0
    modules: tuple[Any, Any] | None = None
    off = False


def tokens(key: str, messages: pa.Array, prefix: str, length: int) -> pa.Array | None:
    """``prefix`` and the first ``length`` hex digits of HMAC-SHA256(``key``, message) for
    each message, as large strings; None when the fast path is off, not installed or not yet
    worth importing (the caller then uses hashlib)."""
    if _State.off:
        return None
    if _State.modules is None:
        _State.hashed += len(messages)
        if _State.hashed < IMPORT_AFTER or not _load():
            return None
    assert _State.modules is not None
    pl, plh = _State.modules
    try:
        hexed = plh.col("m").chash.hmac_sha256(key=key).str.slice(0, length)
        frame = pl.DataFrame({"m": pl.from_arrow(messages)})
        out: pa.Array = frame.select(pl.lit(prefix) + hexed).to_series().to_arrow()
        return out.cast(pa.large_string())
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # any failure, a Rust panic too: hashlib instead
        # the type only: a message could quote the expression it ran
        turn_off(f"polars-hash failed ({type(error).__name__})")
        return None


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
