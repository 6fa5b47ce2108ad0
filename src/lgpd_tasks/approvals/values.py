"""An approval binds the values of the statement it was asked for, not only its shape.

A request shows the statement with its literal values replaced by ``?`` (they may be personal
data), and its fingerprint is that of the shape. Without more, an approval would admit the
same statement with other values: a cutoff date read from an upstream task or a Variable
that changed between the request and the run. So the request also stores a salted scrypt
digest of the statement's tokens (its text without comments and layout: a query tag such
as ``/* task: extract */`` may differ between the gate and the task) and its parameters,
and a run uses the approval only when its own tokens and parameters give the same digest.
Parameters of a type whose value cannot be told exactly are refused (:class:`ApprovalError`)
rather than bound by a description that two different values could share.

scrypt (n=2^14, r=8: about 16 MiB and tens of milliseconds per guess) makes recovering a
low-entropy value from the stored digest slow: a CPF has about 10^9 candidates, some years
of computing for one request. A plain hash would give it away in seconds.

>>> bound = bind(statement_values("DELETE FROM t WHERE d < ?", ["2023-01-01"]))
>>> admits(bound, statement_values("DELETE FROM t WHERE d < ? -- tag", ["2023-01-01"]))
True
>>> admits(bound, statement_values("DELETE FROM t WHERE d < ?", ["2099-01-01"]))
False
>>> admits(None, statement_values("DELETE FROM t", None))  # a request from before binding
False
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError

from lgpd_tasks.errors import ApprovalError

#: How the stored digest was made: scheme, cost parameters, salt and digest, ``$``-separated.
SCHEME = "scrypt"
_N, _R, _P = 2**14, 8, 1


def statement_values(
    sql: str, parameters: Any, many: bool = False, dialect: str = "postgres"
) -> bytes:
    """A SHA-256 of the statement's tokens and its parameters (kept in memory only).

    No parameters and empty ones are alike: DB-API hooks pass ``{}`` on as nothing. Text
    the dialect cannot tokenise is taken as it is.
    """
    if not many and isinstance(parameters, (Mapping, list, tuple)) and not parameters:
        parameters = None
    try:
        tokens: Any = [
            [t.token_type.name, t.text] for t in Dialect.get_or_raise(dialect).tokenize(sql)
        ]
    except (SqlglotError, ValueError):
        tokens = sql
    document = [tokens, _plain(parameters), many]
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def bind(values: bytes) -> str:
    """The salted scrypt digest a request stores for ``values``."""
    salt = secrets.token_bytes(16)
    return "$".join((SCHEME, str(_N), str(_R), str(_P), salt.hex(), _scrypt(values, salt).hex()))


def admits(bound: str | None, values: bytes) -> bool:
    """Whether ``values`` are those a request was bound to (a request without a binding,
    made before requests had one, admits none: its run asks again)."""
    if bound is None:
        return False
    try:
        scheme, n, r, p, salt, digest = bound.split("$")
        if (scheme, int(n), int(r), int(p)) != (SCHEME, _N, _R, _P):
            return False
        return hmac.compare_digest(_scrypt(values, bytes.fromhex(salt)), bytes.fromhex(digest))
    except ValueError:
        return False  # a binding this version cannot read admits nothing


def _scrypt(values: bytes, salt: bytes) -> bytes:
    return hashlib.scrypt(values, salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 1024 * 1024, dklen=32)


#: Parameter types whose ``str`` tells every value apart, tagged by their name.
_EXACT = (Decimal, dt.datetime, dt.date, dt.time, dt.timedelta, uuid.UUID)


def _plain(value: Any) -> Any:
    """``value`` as JSON that tells types apart (``1``, ``"1"`` and ``Decimal("1")`` differ).

    Refuses a type it cannot render exactly: psycopg's ``Json`` wrapper is read through its
    ``obj``, numpy values through ``tolist()``; anything else (a set, an object whose ``str``
    abridges it) could let two different values share one binding.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        items = [(f"{type(k).__qualname__}:{_key(k)}", _plain(v)) for k, v in value.items()]
        return {"map": [[k, v] for k, v in sorted(items, key=lambda item: item[0])]}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, _EXACT):
        return {
            type(value).__qualname__: value.isoformat()
            if hasattr(value, "isoformat")
            else str(value)
        }
    kind = type(value)
    if (
        kind.__module__.startswith("psycopg")
        and kind.__name__ in ("Json", "Jsonb")
        and getattr(value, "dumps", None) is None  # a custom dumps could send other text
    ):
        return {kind.__name__: _plain(value.obj)}
    if kind.__module__ == "numpy" and hasattr(value, "tolist"):
        return {f"numpy.{getattr(value, 'dtype', '')}": _plain(value.tolist())}
    raise ApprovalError(
        f"a parameter of type {kind.__qualname__} cannot be bound to an approval (its value "
        "cannot be told exactly); pass str, int, float, bool, None, bytes, Decimal, a date or "
        "time, a UUID, or lists and dicts of these"
    )


def _key(key: object) -> str:
    if isinstance(key, (str, int, float, bool)) or key is None:
        return str(key)
    raise ApprovalError(
        f"a parameter key of type {type(key).__qualname__} cannot be bound to an approval"
    )
