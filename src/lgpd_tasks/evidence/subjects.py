"""The subject trail: keyed digests of the data subjects whose rows each statement touched."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlglot import exp
from sqlglot.errors import SqlglotError

from lgpd_tasks.audit.schema import subject_access, subject_links, subject_trail
from lgpd_tasks.errors import AuditUnavailable, MaskingError, PolicyError, PolicyProblem
from lgpd_tasks.policy.names import normalize_identifier, normalize_table_name

if TYPE_CHECKING:
    from lgpd_tasks.audit import AuditStore
    from lgpd_tasks.policy import Policy
    from lgpd_tasks.sql import Decision

DIGEST_BYTES = 16
"""Digests keep the first 128 bits of the HMAC-SHA256 (see ``audit/schema.py`` for why)."""

#: Subject digests kept per statement to skip repeats (orders of one customer); past this
#: many the set starts over, which only costs duplicate rows, never lost ones.
_DEDUP_LIMIT = 1_000_000
_FLUSH_ROWS = 50_000
_NOT_DIGITS = re.compile(r"[^0-9]")
_SEPARATORS = re.compile(r"[\s./\-]")
#: Domain separation: trail digests never equal the ``hmac:`` values masking puts in data.
_TRAIL_LABEL = b"lgpd-tasks subject trail v1"


def normalize_subject(value: object, how: str = "auto") -> str | None:
    """The identifier as the trail hashes it; ``None`` for an empty value.

    >>> normalize_subject("123.456.789-09"), normalize_subject(" 123 456 789 09 ")
    ('12345678909', '12345678909')
    >>> normalize_subject(" Maria@Example.COM "), normalize_subject(42)
    ('maria@example.com', '42')
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if how == "exact":
        return text or None
    if how == "digits":
        digits = _digits_only(text)
        return digits or None
    if how == "auto":
        compact = text.replace(".", "").replace("-", "").replace("/", "").replace(" ", "")
        if compact.isascii() and compact.isdigit():
            return compact
        if _SEPARATORS.sub("", text).isdigit():
            return _digits_only(text)
    folded = text.strip().casefold()
    return folded or None


def _digits_only(text: str) -> str:
    compact = text.replace(".", "").replace("-", "").replace("/", "").replace(" ", "")
    if compact.isascii() and compact.isdigit():
        return compact
    return _NOT_DIGITS.sub("", text)


@dataclass(frozen=True)
class SubjectKey:
    """A table's subject key, resolved from the policy's ``subjects`` section."""

    table: str
    column: str
    normalize: str = "auto"
    primary_key: str | None = None
    #: When set, ``column`` holds the primary key of this subject table, not the identifier.
    references: str | None = None
    category: str | None = None


def subject_keys(policy: Policy) -> dict[str, SubjectKey]:
    """The policy's subject keys by table (``schema.table``), references checked."""
    dialect = policy.dialect
    keys: dict[str, SubjectKey] = {}
    problems: list[PolicyProblem] = []
    for raw_table, spec in policy.spec.subjects.items():
        table = normalize_table_name(raw_table, dialect)
        ref = normalize_table_name(spec.references, dialect) if spec.references else None
        keys[table] = SubjectKey(
            table=table,
            column=normalize_identifier(spec.key, dialect),
            normalize=spec.normalize,
            primary_key=normalize_identifier(spec.primary_key, dialect)
            if spec.primary_key
            else None,
            references=ref,
            category=spec.category,
        )
    for table, key in keys.items():
        if key.references is None:
            continue
        target = keys.get(key.references)
        if target is None or target.primary_key is None:
            problems.append(
                PolicyProblem(
                    policy.source,
                    f"subjects.{table}.references",
                    f"{key.references} must be listed in subjects with a primary_key",
                )
            )
    if problems:
        raise PolicyError(problems)
    return keys


class _Hasher:
    """HMAC-SHA256 with the inner and outer states computed once, truncated to 16 bytes."""

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:DIGEST_BYTES]


def trail_key(policy: Policy | None, *, key: bytes | None = None) -> bytes:
    """The trail's HMAC key, derived from the masking key the policy names (``key_env``)."""
    if key is None:
        env = policy.masking.key_env if policy is not None else "LGPD_MASKING_KEY"
        raw = os.environ.get(env, "")
        if not raw:
            raise MaskingError(
                f"the subject trail needs the masking key in the environment variable {env}, "
                "which is not set; refusing to record or look up subjects without a key"
            )
        key = raw.encode()
    return hmac.digest(key, _TRAIL_LABEL, "sha256")


class SubjectHasher:
    """Keyed digests of subject identifiers and of primary-key values.

    >>> hasher = SubjectHasher(b"k" * 32)
    >>> hasher.subject("123.456.789-09") == hasher.subject("12345678909")
    True
    >>> len(hasher.subject("12345678909"))
    16
    """

    def __init__(self, key: bytes) -> None:
        self._hasher = _Hasher(key)

    def subject(self, identifier: object, normalize: str = "auto") -> bytes:
        value = normalize_subject(identifier, normalize)
        if value is None:
            raise ValueError("empty subject identifier")
        return self._hasher.digest(b"s\0" + value.encode("utf-8"))

    def primary_key(self, table: str, value: object) -> bytes | None:
        text = normalize_subject(value, "exact")
        if text is None:
            return None
        return self._hasher.digest(b"p\0" + table.encode() + b"\0" + text.encode("utf-8"))

    def raw(self, message: bytes) -> bytes:
        return self._hasher.digest(message)


@dataclass(frozen=True)
class _Column:
    """A result or parameter position that carries a subject key."""

    position: int
    key: SubjectKey
    #: "subject" (the identifier), "pk" (the table's primary key) or "ref" (a reference)
    role: str


class SubjectTrail:
    """Records which subjects each statement over a subject table returned or changed.

    :class:`lgpd_tasks.connection.GuardedCursor` calls :meth:`begin` after a statement ran
    and feeds the raw (pre-masking) rows of each fetched batch to the returned
    :class:`StatementTrail`; only 16-byte keyed digests reach the store.
    """

    def __init__(
        self, store: AuditStore, keys: Mapping[str, SubjectKey], key: bytes, dialect: str
    ) -> None:
        self.store = store
        self.keys = dict(keys)
        self.hasher = SubjectHasher(key)
        self.dialect = dialect

    @classmethod
    def from_policy(
        cls, policy: Policy, store: AuditStore, *, key: bytes | None = None
    ) -> SubjectTrail | None:
        """A trail for the policy's ``subjects``, or ``None`` when it declares none."""
        keys = subject_keys(policy)
        if not keys:
            return None
        return cls(store, keys, trail_key(policy, key=key), policy.dialect)

    def begin(
        self,
        intent_id: str,
        decision: Decision,
        columns: Sequence[str],
        sql: str = "",
        parameters: Any = None,
        *,
        many: bool = False,
    ) -> StatementTrail | None:
        """Start the trail of one statement that ran; ``None`` if it touched no subject table."""
        tables: set[str] = set()
        written: set[str] = set()
        for statement in decision.statements:
            tables |= statement.tables_read | statement.tables_written
            written |= statement.tables_written
        touched = sorted(t for t in tables if t in self.keys)
        if not touched:
            return None
        access = uuid.UUID(intent_id).bytes
        positions = self._result_columns(decision, columns, touched) if columns else []
        trail = StatementTrail(self, access, positions)
        coverage = "rows" if positions else "none"
        if written & set(touched) and not columns:
            found = self._statement_keys(sql, parameters, many, written & set(touched))
            if found is not None:
                coverage, values = found
                trail.add_values(values)
        elif columns and written & set(touched) and positions:
            coverage = "returning"
        self._write_access(access, touched, coverage)
        return trail

    # -- which values are subject keys -----------------------------------------------------

    def _result_columns(
        self, decision: Decision, columns: Sequence[str], touched: Sequence[str]
    ) -> list[_Column]:
        lineage: dict[str, tuple[str, ...]] = {}
        for statement in decision.statements:
            for edge in statement.lineage:
                lineage[edge.target] = edge.sources
        found: list[_Column] = []
        for position, name in enumerate(columns):
            sources = lineage.get(name)
            for table in touched:
                key = self.keys[table]
                if sources is not None:
                    # only a column passed through as is identifies its row's subject
                    if len(sources) != 1:
                        continue
                    source = sources[0]
                    direct = {f"{table}.{key.column}": "subject"}
                    if key.primary_key:
                        direct[f"{table}.{key.primary_key}"] = "pk"
                    if key.references:
                        direct[f"{table}.{key.column}"] = "ref"
                    role = direct.get(source)
                    if role is None and source == f"{table}.*":
                        role = self._role_by_name(key, name, touched)
                else:
                    role = self._role_by_name(key, name, touched)
                if role is not None:
                    found.append(_Column(position, key, role))
        return found

    def _role_by_name(self, key: SubjectKey, name: str, touched: Sequence[str]) -> str | None:
        # without lineage (RETURNING, SELECT * unexpanded) a name is trusted only when no
        # other touched table has a column of that name declared as a key
        column = normalize_identifier(name, self.dialect)
        others = [self.keys[t] for t in touched if t != key.table]
        clash = {o.column for o in others} | {o.primary_key for o in others if o.primary_key}
        if column in clash:
            return None
        if column == key.column:
            return "ref" if key.references else "subject"
        if key.primary_key and column == key.primary_key:
            return "pk"
        return None

    def _statement_keys(
        self, sql: str, parameters: Any, many: bool, written: set[str]
    ) -> tuple[str, list[tuple[SubjectKey, str, object]]] | None:
        """Keys named in an UPDATE/DELETE's WHERE or an INSERT's VALUES, when knowable."""
        try:
            trees = [t for t in sqlglot.parse(sql, read=self.dialect) if t is not None]
        except SqlglotError:
            return None
        if len(trees) != 1:
            return None
        tree = trees[0]
        table_expr = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        if not isinstance(table_expr, exp.Table):
            return None
        table = normalize_table_name(table_expr.sql(dialect=self.dialect), self.dialect)
        key = self.keys.get(table)
        if key is None or table not in written:
            return None
        placeholders = list(tree.find_all(exp.Placeholder, bfs=False))
        param_sets: list[Any] = list(parameters) if many else [parameters]
        values: list[tuple[SubjectKey, str, object]] = []
        if isinstance(tree, exp.Insert):
            found = _insert_values(tree, key, self.dialect)
            kind = "values"
        elif isinstance(tree, exp.Update | exp.Delete):
            found = _where_values(tree.args.get("where"), key, self.dialect)
            kind = "where"
        else:
            return None
        if found is None:
            return None
        for params in param_sets:
            for role, node in found:
                value = _bind(node, placeholders, params)
                if value is _UNKNOWN:
                    return None
                values.append((key, role, value))
        return kind, values

    # -- storing ----------------------------------------------------------------------------

    def _write_access(self, access: bytes, tables: Sequence[str], coverage: str) -> None:
        self.store.ensure_ready()
        try:
            with self.store.engine.begin() as conn:
                conn.execute(
                    subject_access.insert().values(
                        access=access, tables=",".join(tables), coverage=coverage
                    )
                )
        except SQLAlchemyError as err:
            raise _unavailable(self.store, err) from None

    def write(
        self, access: bytes, digests: Iterable[bytes], links: Iterable[tuple[bytes, bytes]]
    ) -> None:
        """Insert one batch of digests (and pk -> subject links) in one transaction."""
        rows = [(access, d) for d in digests]
        link_rows = list(links)
        if not rows and not link_rows:
            return
        store = self.store
        try:
            with store.engine.begin() as conn:
                if store.is_postgres:
                    raw: Any = conn.connection.dbapi_connection
                    with raw.cursor() as cur:
                        if rows:
                            with cur.copy(
                                "COPY lgpd_subject_trail (access, subject) FROM STDIN"
                            ) as copy:
                                for row in rows:
                                    copy.write_row(row)
                        if link_rows:
                            cur.executemany(
                                "INSERT INTO lgpd_subject_links (pk, subject) VALUES (%s, %s) "
                                "ON CONFLICT DO NOTHING",
                                link_rows,
                            )
                else:
                    if rows:
                        conn.exec_driver_sql(
                            "INSERT INTO lgpd_subject_trail (access, subject) VALUES (?, ?)",
                            rows,
                        )
                    if link_rows:
                        conn.exec_driver_sql(
                            "INSERT OR IGNORE INTO lgpd_subject_links (pk, subject) VALUES (?, ?)",
                            link_rows,
                        )
        except SQLAlchemyError as err:
            raise _unavailable(store, err) from None
        except Exception as err:  # psycopg errors raised inside COPY are not wrapped
            if type(err).__module__.startswith("psycopg"):
                raise _unavailable(store, err) from None
            raise

    # -- reading (reports) ----------------------------------------------------------------

    def accesses_of(self, identifier: str, *, normalize: str | None = None) -> set[str]:
        """Intent record ids of every statement whose trail holds this person."""
        how = normalize or _common_normalization(self.keys.values())
        digest = self.hasher.subject(identifier, how)
        return accesses_of_digest(self.store, digest)


def accesses_of_digest(store: AuditStore, digest: bytes) -> set[str]:
    """Intent record ids whose trail holds ``digest`` directly or through a primary key."""
    store.ensure_ready()
    try:
        with store.engine.connect() as conn:
            pks = [
                r[0]
                for r in conn.execute(
                    select(subject_links.c.pk).where(subject_links.c.subject == digest)
                )
            ]
            wanted = [digest, *pks]
            found: set[str] = set()
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                query = (
                    select(subject_trail.c.access)
                    .where(subject_trail.c.subject.in_(chunk))
                    .distinct()
                )
                found |= {str(uuid.UUID(bytes=bytes(r[0]))) for r in conn.execute(query)}
            return found
    except SQLAlchemyError as err:
        raise _unavailable(store, err) from None


def access_coverage(store: AuditStore) -> dict[str, tuple[str, str]]:
    """Every recorded statement over a subject table: intent id -> (tables, coverage)."""
    store.ensure_ready()
    with store.engine.connect() as conn:
        return {
            str(uuid.UUID(bytes=bytes(r[0]))): (str(r[1]), str(r[2]))
            for r in conn.execute(select(subject_access))
        }


def _common_normalization(keys: Iterable[SubjectKey]) -> str:
    found = {k.normalize for k in keys if k.references is None}
    return found.pop() if len(found) == 1 else "auto"


class StatementTrail:
    """The trail of one statement: digests buffered and written in batches."""

    def __init__(self, trail: SubjectTrail, access: bytes, columns: Sequence[_Column]) -> None:
        self._trail = trail
        self._access = access
        self._columns = tuple(columns)
        self._seen: set[bytes] = set()
        self._buffer: list[bytes] = []
        self._links: list[tuple[bytes, bytes]] = []
        self._subject_cols = [c for c in self._columns if c.role == "subject"]
        self._pk_cols = [c for c in self._columns if c.role != "subject"]
        self.subjects = 0

    def observe(self, rows: Sequence[Sequence[Any]]) -> None:
        """Take one fetched batch of raw rows (before masking)."""
        if not self._columns or not rows:
            return
        hasher = self._trail.hasher
        seen = self._seen
        buffer = self._buffer
        for col in self._subject_cols:
            position, how = col.position, col.key.normalize
            digest = hasher.raw
            for row in rows:
                value = normalize_subject(row[position], how)
                if value is None:
                    continue
                d = digest(b"s\0" + value.encode("utf-8"))
                if d not in seen:
                    seen.add(d)
                    buffer.append(d)
        for col in self._pk_cols:
            table = col.key.references if col.role == "ref" else col.key.table
            assert table is not None
            for row in rows:
                pk = hasher.primary_key(table, row[col.position])
                if pk is not None and pk not in seen:
                    seen.add(pk)
                    buffer.append(pk)
        if self._pk_cols and self._subject_cols:
            self._learn_links(rows)
        if len(seen) > _DEDUP_LIMIT:
            seen.clear()
        if len(buffer) >= _FLUSH_ROWS:
            self.flush()

    def _learn_links(self, rows: Sequence[Sequence[Any]]) -> None:
        hasher = self._trail.hasher
        for pk_col in self._pk_cols:
            if pk_col.role != "pk":
                continue
            for subject_col in self._subject_cols:
                if subject_col.key.table != pk_col.key.table:
                    continue
                for row in rows:
                    pk = hasher.primary_key(pk_col.key.table, row[pk_col.position])
                    value = normalize_subject(row[subject_col.position], subject_col.key.normalize)
                    if pk is not None and value is not None:
                        self._links.append((pk, hasher.raw(b"s\0" + value.encode("utf-8"))))

    def add_values(self, values: Iterable[tuple[SubjectKey, str, object]]) -> None:
        """Keys named by the statement itself (WHERE, VALUES)."""
        hasher = self._trail.hasher
        for key, role, value in values:
            if role == "subject":
                text = normalize_subject(value, key.normalize)
                digest = hasher.raw(b"s\0" + text.encode("utf-8")) if text else None
            else:
                table = key.references if role == "ref" else key.table
                assert table is not None
                digest = hasher.primary_key(table, value)
            if digest is not None and digest not in self._seen:
                self._seen.add(digest)
                self._buffer.append(digest)

    def flush(self) -> None:
        buffer, self._buffer = self._buffer, []
        links, self._links = self._links, []
        self.subjects += len(buffer)
        self._trail.write(self._access, buffer, dict.fromkeys(links))

    def close(self) -> None:
        self.flush()
        self._seen.clear()


_UNKNOWN = object()


def _key_role(column: exp.Expr, key: SubjectKey, dialect: str) -> str | None:
    if not isinstance(column, exp.Column):
        return None
    name = normalize_identifier(column.name, dialect, quoted=bool(column.this.args.get("quoted")))
    if name == key.column:
        return "ref" if key.references else "subject"
    if key.primary_key and name == key.primary_key:
        return "pk"
    return None


def _where_values(
    where: exp.Expr | None, key: SubjectKey, dialect: str
) -> list[tuple[str, exp.Expr]] | None:
    """Values of ``key = v`` or ``key IN (...)`` among the WHERE's top-level AND terms."""
    if where is None:
        return None
    condition = where.this
    terms: list[exp.Expr] = []
    stack = [condition]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.And):
            stack.extend([node.this, node.expression])
        elif isinstance(node, exp.Paren):
            stack.append(node.this)
        else:
            terms.append(node)
    for term in terms:
        if isinstance(term, exp.EQ):
            for col, val in ((term.this, term.expression), (term.expression, term.this)):
                role = _key_role(col, key, dialect)
                if role and isinstance(val, exp.Literal | exp.Placeholder):
                    return [(role, val)]
        if isinstance(term, exp.In) and not term.args.get("query"):
            role = _key_role(term.this, key, dialect)
            items = term.expressions
            if role and items and all(isinstance(i, exp.Literal | exp.Placeholder) for i in items):
                return [(role, i) for i in items]
    return None


def _insert_values(
    tree: exp.Insert, key: SubjectKey, dialect: str
) -> list[tuple[str, exp.Expr]] | None:
    schema = tree.this
    values = tree.expression
    if not isinstance(schema, exp.Schema) or not isinstance(values, exp.Values):
        return None
    names = [normalize_identifier(i.name, dialect) for i in schema.expressions]
    found: list[tuple[str, exp.Expr]] = []
    for position, name in enumerate(names):
        role = None
        if name == key.column:
            role = "ref" if key.references else "subject"
        elif key.primary_key and name == key.primary_key:
            role = "pk"
        if role is None:
            continue
        for row in values.expressions:
            items = row.expressions if isinstance(row, exp.Tuple) else [row]
            if position >= len(items) or not isinstance(
                items[position], exp.Literal | exp.Placeholder
            ):
                return None
            found.append((role, items[position]))
    # a row whose subject key is not named (id from a sequence) stays unknown
    return found if any(role != "pk" for role, _ in found) else None


def _bind(node: exp.Expr, placeholders: list[exp.Placeholder], params: Any) -> object:
    if isinstance(node, exp.Literal):
        return node.this
    name = node.this
    if name is not None and not isinstance(name, str):
        name = getattr(name, "name", None)
    if name:
        if isinstance(params, Mapping) and name in params:
            return params[name]
        return _UNKNOWN
    if isinstance(params, Mapping) or params is None:
        return _UNKNOWN
    index = next((i for i, p in enumerate(placeholders) if p is node), None)
    if index is None or len(params) != len(placeholders):
        return _UNKNOWN
    return params[index]


def _unavailable(store: AuditStore, err: BaseException) -> AuditUnavailable:
    detail = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
    return AuditUnavailable(f"audit store {store.url} cannot record the subject trail: {detail}")
