"""The subject trail: keyed digests of the data subjects whose rows each statement touched."""

from __future__ import annotations

import hmac
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlalchemy import ColumnElement, Connection, LargeBinary, bindparam, func, or_, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlglot import exp
from sqlglot.errors import SqlglotError

from lgpd_tasks.audit.schema import subject_access, subject_digests, subject_links
from lgpd_tasks.errors import AuditUnavailable, MaskingError, PolicyError, PolicyProblem
from lgpd_tasks.evidence.digests import Digester, Hasher
from lgpd_tasks.evidence.trail_worker import DIGEST_BYTES as _DIGEST_BYTES
from lgpd_tasks.evidence.trail_worker import SUBJECT
from lgpd_tasks.policy.names import normalize_identifier, normalize_table_name

if TYPE_CHECKING:
    from lgpd_tasks.audit import AuditStore
    from lgpd_tasks.policy import Policy
    from lgpd_tasks.sql import Decision

DIGEST_BYTES = _DIGEST_BYTES
"""Digests keep the first 128 bits of the HMAC-SHA256 (see ``audit/schema.py`` for why)."""

#: Digests per stored block (4 MiB of digests); each block written is also the moment the
#: statement waits for the digest helper to catch up.
_BLOCK = 262_144
#: How many blob scans one database query of a subject report runs at most.
_SCAN_CHUNK = 32
_NOT_DIGITS = re.compile(r"[^0-9]")
_SEPARATORS = re.compile(r"[\s./\-]")
#: Added to a statement's coverage (``rows+keys``) when its trail holds primary keys (or
#: references) without their subject key: only links from earlier or later statements
#: tell whose rows they are.
KEYS_SUFFIX = "+keys"
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


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of ``text``; lone surrogates (undecodable input bytes) never raise.

    >>> _utf8("\\udcff") == "\\udcff".encode("utf-8", "surrogatepass")
    True
    """
    return text.encode("utf-8", "surrogatepass")


class SubjectHasher:
    """Keyed digests of subject identifiers and of primary-key values.

    >>> hasher = SubjectHasher(b"k" * 32)
    >>> hasher.subject("123.456.789-09") == hasher.subject("12345678909")
    True
    >>> len(hasher.subject("12345678909"))
    16
    """

    def __init__(self, key: bytes) -> None:
        self._hasher = Hasher(key)

    def subject(self, identifier: object, normalize: str = "auto") -> bytes:
        value = normalize_subject(identifier, normalize)
        if value is None:
            raise ValueError("empty subject identifier")
        return self._hasher.digest(b"s\0" + _utf8(value))

    def primary_key(self, table: str, value: object) -> bytes | None:
        text = normalize_subject(value, "exact")
        if text is None:
            return None
        return self._hasher.digest(b"p\0" + _utf8(table) + b"\0" + _utf8(text))

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
        self.key = key
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
        lone_keys = trail.lone_keys
        if written & set(touched) and not columns:
            found = self._statement_keys(sql, parameters, many, written & set(touched))
            if found is not None:
                coverage, values = found
                trail.add_values(values)
                lone_keys = any(role != "subject" for _, role, _ in values)
        elif columns and written & set(touched) and positions:
            coverage = "returning"
        if lone_keys and coverage != "none":
            # the trail may hold primary keys never yet seen with their subject key: a
            # report that cannot follow them says so (see accesses_with_unlinked_keys)
            coverage += KEYS_SUFFIX
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

    def write(self, access: bytes, part: int, digests: bytes, links: bytes = b"") -> None:
        """Store one block of a statement's digests and of pk -> subject links at once.

        ``digests`` is 16-byte digests end to end; ``links`` 32-byte pairs, each a
        primary-key digest then the subject digest it leads to.
        """
        if not digests and not links:
            return
        store = self.store
        try:
            with store.engine.begin() as conn:
                if digests:
                    conn.execute(
                        subject_digests.insert().values(
                            access=access,
                            part=part,
                            count=len(digests) // DIGEST_BYTES,
                            digests=digests,
                        )
                    )
                if links:
                    conn.execute(
                        subject_links.insert().values(
                            count=len(links) // (2 * DIGEST_BYTES), links=links
                        )
                    )
        except SQLAlchemyError as err:
            raise _unavailable(store, err) from None

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
            pks: set[bytes] = set()
            width = 2 * DIGEST_BYTES
            for (links,) in _blobs_holding(conn, store, subject_links.c.links, (), [digest]):
                for pos in _aligned(bytes(links), digest, width, DIGEST_BYTES):
                    pks.add(bytes(links[pos - DIGEST_BYTES : pos]))
            wanted = [digest, *sorted(pks)]
            found: set[str] = set()
            for i in range(0, len(wanted), _SCAN_CHUNK):
                chunk = wanted[i : i + _SCAN_CHUNK]
                for access, blob in _blobs_holding(
                    conn, store, subject_digests.c.digests, (subject_digests.c.access,), chunk
                ):
                    data = bytes(blob)
                    if any(
                        next(_aligned(data, d, DIGEST_BYTES, 0), None) is not None for d in chunk
                    ):
                        found.add(str(uuid.UUID(bytes=bytes(access))))
            return found
    except SQLAlchemyError as err:
        raise _unavailable(store, err) from None


def _blobs_holding(
    conn: Connection,
    store: AuditStore,
    blob: ColumnElement[bytes],
    extra: Sequence[ColumnElement[Any]],
    needles: Sequence[bytes],
) -> Iterator[Sequence[Any]]:
    """Rows whose ``blob`` contains any of ``needles`` somewhere (alignment not checked)."""
    # the database scans the blobs, so only the few blocks that may match travel
    if store.is_postgres:
        tests: list[Any] = [
            text(f"position(:n{i} IN {blob.name}) > 0").bindparams(
                bindparam(f"n{i}", n, type_=LargeBinary)
            )
            for i, n in enumerate(needles)
        ]
    else:
        tests = [
            func.instr(blob, bindparam(f"n{i}", n, type_=LargeBinary)) > 0
            for i, n in enumerate(needles)
        ]
    query = select(*extra, blob).where(or_(*tests))
    yield from conn.execute(query)


def _aligned(blob: bytes, needle: bytes, width: int, offset: int) -> Iterator[int]:
    """Positions of ``needle`` in ``blob`` that start a field (``offset`` within a record).

    >>> list(_aligned(bytes([1, 2, 3, 4, 2, 3]), bytes([2, 3]), 2, 0))
    [4]
    """
    pos = blob.find(needle)
    while pos >= 0:
        if pos % width == offset:
            yield pos
        pos = blob.find(needle, pos + 1)


def accesses_with_unlinked_keys(store: AuditStore, access_ids: Iterable[str]) -> set[str]:
    """Those of ``access_ids`` whose trail holds a digest no primary-key link leads from.

    For statements recorded with :data:`KEYS_SUFFIX` (rows named by primary key only):
    such a key was never seen with its subject key, so whose row it was is unknown. A
    subject digest in the same trail (another table's key returned alongside) counts too,
    so such a statement may be listed although every key in it is known.
    """
    wanted = {uuid.UUID(a).bytes: a for a in access_ids}
    if not wanted:
        return set()
    store.ensure_ready()
    try:
        with store.engine.connect() as conn:
            digests: dict[bytes, set[bytes]] = {}
            accesses = sorted(wanted)
            for i in range(0, len(accesses), 500):
                query = select(subject_digests.c.access, subject_digests.c.digests).where(
                    subject_digests.c.access.in_(accesses[i : i + 500])
                )
                for access, blob in conn.execute(query):
                    data = bytes(blob)
                    digests.setdefault(bytes(access), set()).update(
                        data[j : j + DIGEST_BYTES] for j in range(0, len(data), DIGEST_BYTES)
                    )
            pending = set().union(*digests.values()) if digests else set()
            linked: set[bytes] = set()
            width = 2 * DIGEST_BYTES
            if pending:
                for (links,) in conn.execute(select(subject_links.c.links)):
                    data = bytes(links)
                    linked.update(
                        d
                        for j in range(0, len(data), width)
                        if (d := data[j : j + DIGEST_BYTES]) in pending
                    )
    except SQLAlchemyError as err:
        raise _unavailable(store, err) from None
    return {wanted[a] for a, held in digests.items() if held - linked}


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
    """The trail of one statement: distinct subjects hashed once, stored in blocks.

    A row that carries both its table's primary key and subject key yields a link (primary
    key digest -> subject digest) and the subject digest; a primary key without a subject
    (or a reference to another subject table) goes into the trail itself. Here the
    identifiers are only picked and normalised; a :class:`Digester` de-duplicates and
    hashes them, in a helper process once the statement is large.
    """

    def __init__(self, trail: SubjectTrail, access: bytes, columns: Sequence[_Column]) -> None:
        self._trail = trail
        self._access = access
        self._columns = tuple(columns)
        self._digester = Digester(
            trail.key, unavailable=lambda what: _unavailable(trail.store, what)
        )
        self._part = 0
        subject_cols = [c for c in self._columns if c.role == "subject"]
        # each primary-key column with the subject column of its own table, if returned
        self._pk_cols: list[tuple[_Column, _Column | None]] = []
        for col in self._columns:
            if col.role == "subject":
                continue
            partner = None
            if col.role == "pk":
                partner = next((c for c in subject_cols if c.key.table == col.key.table), None)
            self._pk_cols.append((col, partner))
        # a subject column paired with a primary key is hashed by the link step
        partnered = {id(p) for _, p in self._pk_cols if p is not None}
        self._subject_cols = [c for c in subject_cols if id(c) not in partnered]
        #: Primary keys (or references) go into the trail without their subject key.
        self.lone_keys = any(p is None for _, p in self._pk_cols)
        self.subjects = 0

    def observe(self, rows: Sequence[Sequence[Any]]) -> None:
        """Take one fetched batch of raw rows (before masking)."""
        if not self._columns or not rows:
            return
        digester = self._digester
        for col in self._subject_cols:
            values = list(map(itemgetter(col.position), rows))
            digester.add(_SUBJECT, _texts(values, col.key.normalize))
        for col, partner in self._pk_cols:
            table = col.key.references if col.role == "ref" else col.key.table
            assert table is not None
            namespace = _pk_namespace(table)
            keys = list(map(itemgetter(col.position), rows))
            if partner is None:
                digester.add(namespace, _texts(keys, "exact"))
                continue
            subjects = list(map(itemgetter(partner.position), rows))
            self._link(namespace, keys, subjects, partner.key.normalize)
        if digester.pending >= _BLOCK:
            self.flush()

    def _link(self, namespace: bytes, keys: list[Any], subjects: list[Any], how: str) -> None:
        """Links for rows holding both keys; the key or the subject alone into the trail."""
        digester = self._digester
        key_texts = _plain(keys, "exact")
        subject_texts = _plain(subjects, how)
        if key_texts is not None and subject_texts is not None:
            digester.link(namespace, key_texts, subject_texts)  # the usual extract
            return
        paired_keys: list[str] = []
        paired_subjects: list[str] = []
        lone_keys: list[object] = []
        lone_subjects: list[object] = []
        spelled = {v: normalize_subject(v, how) for v in set(subjects) if v is not None}
        for key, subject in zip(keys, subjects, strict=True):
            key_text = normalize_subject(key, "exact")
            subject_text = spelled.get(subject)
            if key_text and subject_text:
                paired_keys.append(key_text)
                paired_subjects.append(subject_text)
            elif key_text:
                lone_keys.append(key_text)
            elif subject_text:
                lone_subjects.append(subject_text)
        digester.link(namespace, paired_keys, paired_subjects)
        digester.add(namespace, _texts(lone_keys, "exact"))
        digester.add(_SUBJECT, _texts(lone_subjects, "exact"))

    def add_values(self, values: Iterable[tuple[SubjectKey, str, object]]) -> None:
        """Keys named by the statement itself (WHERE, VALUES)."""
        for key, role, value in values:
            if role == "subject":
                self._digester.add(_SUBJECT, _texts([value], key.normalize))
            else:
                table = key.references if role == "ref" else key.table
                assert table is not None
                self._digester.add(_pk_namespace(table), _texts([value], "exact"))

    def flush(self) -> None:
        digests, links = self._digester.take()
        self.subjects += len(digests) // DIGEST_BYTES
        self._trail.write(self._access, self._part, digests, links)
        if digests:
            self._part += 1

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._digester.close()


_SUBJECT = SUBJECT


def _pk_namespace(table: str) -> bytes:
    return b"p\0" + table.encode() + b"\0"


def _plain(values: list[Any], how: str) -> list[str] | None:
    """``values`` themselves when each is already spelt as hashed (and none is empty).

    The common case, checked in C: strings of digits for ``auto``/``digits``, any strings
    for ``exact``, and whole numbers (as text) for ``exact``.
    """
    try:
        joined = "".join(values)
    except TypeError:
        if how == "exact" and all(type(v) is int for v in values):
            return list(map(str, values))
        return None
    if "" in values:
        return None
    if how == "exact" or (joined.isascii() and joined.isdigit()):
        return values
    return None


def _texts(values: list[Any], how: str) -> list[str]:
    """The identifiers among ``values`` as the trail hashes them (empties dropped).

    >>> sorted(_texts(["123.456.789-09", "12345678909", None, ""], "auto"))
    ['12345678909']
    >>> sorted(_texts([7, None, 8], "exact")), _texts(["00012"], "auto")
    (['7', '8'], ['00012'])
    """
    plain = _plain(values, how)
    if plain is not None:
        return plain
    found = {normalize_subject(v, how) for v in set(values) if v is not None}
    found.discard(None)
    return [t for t in found if t is not None]


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


def _unavailable(store: AuditStore, err: BaseException | str) -> AuditUnavailable:
    detail = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
    return AuditUnavailable(f"audit store {store.url} cannot record the subject trail: {detail}")
