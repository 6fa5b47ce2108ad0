"""Parse a SQL string (sqlglot) into one :class:`StatementAnalysis` per statement, cached.

The caches here do not key by the catalogue: an analysis depends on it only through the
answers of the ``columns(table)`` questions the walker asked, so each result is kept with
those answers and reused for any catalogue that answers them the same (see
:class:`AnswerCache`). A connection's fresh catalogue thus reuses the analyses and decisions
made on the previous connection, and a changed table (``ALTER TABLE ... ADD COLUMN`` before
``SELECT *``) is analysed afresh.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import suppress
from types import MappingProxyType
from typing import Generic, TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.conditions import always_true
from lgpd_tasks.sql.model import Catalog, StatementAnalysis
from lgpd_tasks.sql.normalize import fingerprint, normalize_text, normalize_tree
from lgpd_tasks.sql.walker import Env, Walker

T = TypeVar("T")

_KIND_BY_TYPE: tuple[tuple[type[exp.Expr], str], ...] = (
    (exp.Insert, "insert"),
    (exp.Update, "update"),
    (exp.Delete, "delete"),
    (exp.Merge, "merge"),
    (exp.Copy, "copy"),
    (exp.Create, "create"),
    (exp.Drop, "drop"),
    (exp.Alter, "alter"),
    (exp.TruncateTable, "truncate"),
    (exp.Comment, "comment"),
    (exp.Grant, "grant"),
    (exp.Revoke, "revoke"),
    (exp.Set, "set"),
    (exp.Transaction, "begin"),
    (exp.Commit, "commit"),
    (exp.Rollback, "rollback"),
    (exp.Analyze, "analyze"),
    (exp.Use, "use"),
    (exp.Pragma, "pragma"),
    (exp.Describe, "describe"),
    (exp.Query, "select"),
    (exp.Values, "select"),
)

#: ``EXPLAIN`` options that may precede the explained statement.
_EXPLAIN_OPTIONS = re.compile(
    r"^\s*(?:\((?:[^()]|\([^()]*\))*\)\s*|(?:ANALYZE|ANALYSE|VERBOSE|QUERY\s+PLAN)\b\s*)*",
    re.IGNORECASE,
)


class _DropUnsupportedSyntaxWarnings(logging.Filter):
    """sqlglot logs the raw statement when it falls back to a command; it may hold values."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "unsupported syntax" not in str(record.msg)


_sqlglot_logger = logging.getLogger("sqlglot")
if not any(isinstance(f, _DropUnsupportedSyntaxWarnings) for f in _sqlglot_logger.filters):
    _sqlglot_logger.addFilter(_DropUnsupportedSyntaxWarnings())


def analyze(
    sql: str, dialect: str, *, catalog: Catalog | None = None, scope: Scope | None = None
) -> tuple[StatementAnalysis, ...]:
    """Analyse every statement of ``sql``; the same text is analysed once per process.

    ``scope`` only helps to attribute unqualified columns in joins when no catalogue
    knows the tables' columns (an explicit column grant asserts the column exists).

    >>> [s] = analyze("SELECT c.nome, o.total FROM Crm.Customers c JOIN crm.orders o "
    ...               "ON o.customer_id = c.id WHERE c.cpf = '123'", "postgres")
    >>> s.kind, sorted(s.tables_read)
    ('select', ['crm.customers', 'crm.orders'])
    >>> sorted(s.columns_read["crm.customers"])
    ['cpf', 'id', 'nome']
    >>> s.normalized
    'SELECT c.nome, o.total FROM crm.customers AS c JOIN crm.orders AS o ON o.customer_id = c.id WHERE c.cpf = ?'
    """
    return _ANALYSES.get(
        (sql, dialect, read_key(scope)),
        catalog,
        lambda answering: _analyze_fresh(sql, dialect, answering, scope),
    )


def clear_cache() -> None:
    """Forget every cached analysis (benchmarks measure the cold path with this)."""
    _ANALYSES.clear()


class Keyed(Generic[T]):
    """An object carried through a cache under a hashable key that stands for it."""

    __slots__ = ("_hash", "key", "value")

    def __init__(self, key: Hashable, value: T) -> None:
        self.key = key
        self.value = value
        self._hash = hash(key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keyed) and self.key == other.key


_SCOPE_KEYS: dict[tuple[int, str], tuple[Scope, Keyed[Scope]]] = {}


def _memo_key(scope: Scope, which: str, make: Callable[[Scope], Hashable]) -> Keyed[Scope]:
    # scopes are immutable, so their key is computed once per object
    entry = _SCOPE_KEYS.get((id(scope), which))
    if entry is not None and entry[0] is scope:
        return entry[1]
    keyed = Keyed(make(scope), scope)
    if len(_SCOPE_KEYS) > 4096:
        _SCOPE_KEYS.clear()
    _SCOPE_KEYS[(id(scope), which)] = (scope, keyed)
    return keyed


def _grants(grants: Mapping[str, frozenset[str]]) -> Hashable:
    return tuple(sorted((t, tuple(sorted(c))) for t, c in grants.items()))


def read_key(scope: Scope | None) -> Keyed[Scope] | None:
    """Cache key for what analysis uses of a scope: its read grants."""
    if scope is None:
        return None
    return _memo_key(scope, "read", lambda s: _grants(s.read))


def scope_key(scope: Scope) -> Keyed[Scope]:
    """Cache key for everything a decision depends on in a scope."""
    return _memo_key(
        scope,
        "all",
        lambda s: (
            s.name,
            s.dialect,
            _grants(s.read),
            _grants(s.write),
            s.max_rows,
            tuple(sorted(s.require_approval)),
            s.allow_multiple_statements,
        ),
    )


#: What a catalogue answered: ``(table, columns or None)`` in the order first asked.
Answers = tuple[tuple[str, tuple[str, ...] | None], ...]


class _Recording:
    """A catalogue that passes each question on and notes the answer the analysis used.

    Without a catalogue it answers ``None``, as the walker does with none. A question that
    raises, or one answered differently when asked again, leaves the result unreusable.
    """

    __slots__ = ("_catalog", "answers", "reusable")

    def __init__(self, catalog: Catalog | None) -> None:
        self._catalog = catalog
        self.answers: dict[str, tuple[str, ...] | None] = {}
        self.reusable = True

    def columns(self, table: str) -> Sequence[str] | None:
        try:
            answer = _ask(self._catalog, table)
        except BaseException:
            self.reusable = False
            raise
        if table not in self.answers:
            self.answers[table] = answer
        elif self.answers[table] != answer:
            self.reusable = False
        return answer


def _ask(catalog: Catalog | None, table: str) -> tuple[str, ...] | None:
    if catalog is None:
        return None
    columns = catalog.columns(table)
    return tuple(columns) if columns is not None else None


def _answers_hold(catalog: Catalog | None, answers: Answers) -> bool:
    """Whether ``catalog`` answers every question as recorded; asked in the recorded order
    and stopping at the first difference, so it asks only what a fresh analysis would."""
    for table, expected in answers:
        try:
            if _ask(catalog, table) != expected:
                return False
        except Exception:  # a catalogue that raises is analysed afresh (and fails closed)
            return False
    return True


class AnswerCache(Generic[T]):
    """Results keyed without the catalogue, each kept with the catalogue answers it used.

    A lookup asks the given catalogue the recorded questions and reuses a result only when
    every answer is equal; a result that asked nothing holds for any catalogue. Otherwise
    the result is computed afresh through a recording catalogue and kept as one more variant
    of its key (at most ``variants``, the most recent first); at most ``maxsize`` keys are
    kept, the least recently used dropped first. The catalogue is asked outside the lock, so
    two threads may compute the same key: the later variant replaces the equal one.
    """

    def __init__(self, maxsize: int = 4096, variants: int = 4) -> None:
        self.maxsize = maxsize
        self.variants = variants
        self._entries: OrderedDict[Hashable, tuple[tuple[Answers, T], ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, catalog: Catalog | None, compute: Callable[[Catalog], T]) -> T:
        """The result for ``key`` that holds for ``catalog``; ``compute`` makes a new one
        from the catalogue it is given (a recording of ``catalog``)."""
        for answers, value in self._entries.get(key, ()):
            if _answers_hold(catalog, answers):
                with self._lock, suppress(KeyError):  # dropped meanwhile: still valid
                    self._entries.move_to_end(key)
                return value
        recording = _Recording(catalog)
        value = compute(recording)
        if recording.reusable:
            self._keep(key, tuple(recording.answers.items()), value)
        return value

    def _keep(self, key: Hashable, answers: Answers, value: T) -> None:
        with self._lock:
            others = tuple(v for v in self._entries.get(key, ()) if v[0] != answers)
            self._entries[key] = ((answers, value), *others)[: self.variants]
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def variants_of(self, key: Hashable) -> tuple[Answers, ...]:
        """The recorded answers of each variant kept for ``key``, the most recent first."""
        return tuple(answers for answers, _ in self._entries.get(key, ()))

    def clear(self) -> None:
        """Forget every result."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _analyze_fresh(
    sql: str, dialect: str, catalog: Catalog | None, scope: Scope | None
) -> tuple[StatementAnalysis, ...]:
    try:
        trees = sqlglot.parse(sql, read=dialect)
    except SqlglotError as err:
        return (_unparsable(0, sql, dialect, _error_kind(err)),)
    statements = [t for t in trees if t is not None]
    if not statements:
        return (_unparsable(0, sql, dialect, "no statement"),)
    analysed: list[StatementAnalysis] = []
    for i, tree in enumerate(statements):
        try:
            analysed.append(_statement(i, tree, dialect, catalog, scope))
        except Exception as err:  # a tree shape the walker does not know: fail closed
            analysed.append(
                _unparsable(i, sql, dialect, f"cannot be analysed ({type(err).__name__})")
            )
    return tuple(analysed)


#: Analyses per (text, dialect, read grants), each with the catalogue answers it used.
_ANALYSES: AnswerCache[tuple[StatementAnalysis, ...]] = AnswerCache()


def _error_kind(err: SqlglotError) -> str:
    # sqlglot's messages quote the statement text; keep only the error class
    return f"does not parse ({type(err).__name__})"


def _unparsable(index: int, text: str, dialect: str, problem: str) -> StatementAnalysis:
    normalized = normalize_text(text, dialect)
    return StatementAnalysis(
        index=index,
        kind="unparsable",
        normalized=normalized,
        fingerprint=fingerprint(normalized),
        problem=problem,
    )


def _statement(
    index: int, tree: exp.Expr, dialect: str, catalog: Catalog | None, scope: Scope | None
) -> StatementAnalysis:
    if isinstance(tree, exp.Command):
        return _command(index, tree, dialect, catalog, scope)
    kind = next((k for t, k in _KIND_BY_TYPE if isinstance(tree, t)), None)
    normalized = normalize_tree(tree, dialect)
    if kind is None:
        return StatementAnalysis(
            index=index,
            kind="unknown",
            normalized=normalized,
            fingerprint=fingerprint(normalized),
            problem="not a statement the guard understands",
        )
    walker = Walker(dialect, catalog, scope)
    outputs: list[tuple[str, frozenset[str]]] = []
    copy_endpoint: str | None = None
    if kind == "select" and isinstance(tree.args.get("into"), exp.Into):
        kind = "create"  # SELECT ... INTO creates a table
    if isinstance(tree, exp.Copy):
        copy_endpoint = _copy_endpoint(tree)
        walker.copy_target(tree.this, into=bool(tree.args.get("kind")))
    elif isinstance(tree, (exp.Query, exp.DML, exp.Values)):
        outputs = walker.query(tree, Env())
    else:
        _walk_other(walker, tree)
    if kind == "select":
        for position, (name, sources) in enumerate(outputs):
            if sources:
                walker.edge(name if name != "*" else f"{position}:*", sources)
    where = tree.args.get("where") if isinstance(tree, (exp.Update, exp.Delete)) else None
    where_expr = where.this if isinstance(where, exp.Where) else None
    return StatementAnalysis(
        index=index,
        kind=kind,
        normalized=normalized,
        fingerprint=fingerprint(normalized),
        tables_read=frozenset(walker.tables_read),
        tables_written=frozenset(walker.tables_written),
        columns_read=MappingProxyType({t: frozenset(c) for t, c in walker.reads.items()}),
        columns_written=MappingProxyType({t: frozenset(c) for t, c in walker.writes.items()}),
        lineage=tuple(walker.lineage),
        has_where=where_expr is not None,
        where_always_true=where_expr is not None and always_true(where_expr),
        functions=frozenset(walker.functions),
        output_columns=tuple(name for name, _ in outputs),
        output_sources=_carried(tree, outputs) if kind == "select" else (),
        unknown_functions=frozenset(walker.unknown_functions),
        unresolved_columns=frozenset(walker.unresolved),
        copy_endpoint=copy_endpoint,
        write_kinds=frozenset(walker.write_kinds),
        unbounded_writes=frozenset(walker.unbounded),
        row_bound=_row_bound(tree) if kind == "select" else None,
    )


#: Truth values: they read their columns but carry none of their values into the result.
_TRUTH = (exp.Predicate, exp.Not, exp.And, exp.Or)
#: ``ANY(x)``/``ALL(x)`` are predicates only inside a comparison (which is valueless itself);
#: on their own, some engines read ``any(cpf)`` as an aggregate returning a CPF.
_VALUED_PREDICATES = (exp.Any, exp.All)
#: Aggregates that keep a one-bit value one bit (or make it a count) over a group.
_BIT_AGGREGATES = (exp.Sum, exp.Avg, exp.Max, exp.Min)
_CONSTANTS = (exp.Literal, exp.Null, exp.Boolean)


def _carried(
    tree: exp.Expr, outputs: list[tuple[str, frozenset[str]]]
) -> tuple[frozenset[str], ...]:
    """Each output's sources, but none for a top-level projection that carries no value of
    its columns (see :func:`carries_values`)."""
    carried = [sources for _, sources in outputs]
    stars = any(
        isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star))
        for p in tree.expressions
    )
    # a star stands for any number of outputs: projections and outputs no longer line up
    if isinstance(tree, exp.Select) and len(tree.expressions) == len(outputs) and not stars:
        for i, projection in enumerate(tree.expressions):
            value = projection.this if isinstance(projection, exp.Alias) else projection
            if not carries_values(value):
                carried[i] = frozenset()
    return tuple(carried)


def carries_values(node: exp.Expr) -> bool:
    """Whether a top-level projection can carry more of its columns than a count or a bit.

    Valueless, and so left unmasked: ``count(...)``; ``length(col)`` of a plain column; a
    comparison or other truth value; a one-bit ``CASE``/``IIF`` (one ``WHEN``, constant
    branches); ``sum``/``avg``/``max``/``min`` of such a bit, so ``sum(CASE WHEN email LIKE
    '%@gmail.com' THEN 1 ELSE 0 END)`` is a count, not an e-mail; and any of these narrowed
    by ``FILTER (WHERE ...)``. Everything else carries its columns: functions and arithmetic
    over bits or lengths can rebuild a value (``chr(length(repeat('x', ascii(...))))``, a
    ``CASE`` with a branch per digit), so they are masked under their columns' rules.

    >>> from sqlglot import parse_one
    >>> def carries(sql): return carries_values(parse_one(sql).expressions[0])
    >>> carries("SELECT sum(CASE WHEN email LIKE '%x' THEN 1 ELSE 0 END)")
    False
    >>> carries("SELECT CASE WHEN email LIKE '%x' THEN email END")
    True
    >>> carries("SELECT CASE substr(cpf, 1, 1) WHEN '0' THEN 0 WHEN '1' THEN 1 END")
    True
    """
    if isinstance(node, exp.Paren):
        return carries_values(node.this)
    if isinstance(node, exp.Count):
        return False
    if isinstance(node, exp.Length):
        return not isinstance(node.this, exp.Column)
    if isinstance(node, exp.Filter):
        return carries_values(node.this)  # FILTER (WHERE ...) only narrows the rows counted
    if isinstance(node, _BIT_AGGREGATES) and _one_bit(node.this):
        return False
    return not _one_bit(node)


def _one_bit(node: exp.Expr) -> bool:
    """A truth value, or a choice between two constants on one condition."""
    if isinstance(node, exp.Paren):
        return _one_bit(node.this)
    if isinstance(node, _TRUTH):
        return not isinstance(node, _VALUED_PREDICATES)
    if isinstance(node, exp.Case):
        ifs = node.args.get("ifs") or []
        default = node.args.get("default")
        return (
            len(ifs) == 1
            and isinstance(ifs[0].args.get("true"), _CONSTANTS)
            and (default is None or isinstance(default, _CONSTANTS))
        )
    if isinstance(node, exp.If):
        false = node.args.get("false")
        return isinstance(node.args.get("true"), _CONSTANTS) and (
            false is None or isinstance(false, _CONSTANTS)
        )
    return False


def _walk_other(walker: Walker, tree: exp.Expr) -> None:
    """DDL, DCL and session statements: note tables and calls (they are blocked anyway)."""
    target = tree.this if isinstance(tree.this, exp.Expr) else None
    if isinstance(target, exp.Schema):
        target = target.this
    if isinstance(target, exp.Table) and isinstance(target.this, exp.Identifier):
        walker.tables_written.add(walker.table_name(target))
    body = tree.args.get("expression")
    if isinstance(body, exp.Query):
        walker.query(body, Env())
    for node in tree.find_all(exp.Func):
        walker.function(node)


def _command(
    index: int, tree: exp.Command, dialect: str, catalog: Catalog | None, scope: Scope | None
) -> StatementAnalysis:
    keyword = str(tree.this).upper()
    body_node = tree.args.get("expression")
    if isinstance(body_node, exp.Literal):
        rest = body_node.name
    elif isinstance(body_node, str):
        rest = body_node
    else:
        rest = body_node.sql() if isinstance(body_node, exp.Expr) else ""
    if keyword == "EXPLAIN":
        options = _EXPLAIN_OPTIONS.match(rest)
        body = rest[options.end() :] if options else rest
        inner = analyze(body, dialect, catalog=catalog, scope=scope)
        if len(inner) == 1 and inner[0].kind not in ("unparsable", "unknown"):
            # the options are keywords only (ANALYZE, VERBOSE, (FORMAT JSON)...)
            head = " ".join(f"EXPLAIN {rest[: options.end() if options else 0]}".upper().split())
            normalized = f"{head} {inner[0].normalized}"
            return _replace(inner[0], index, normalized, explain=True)
    words = rest.split()
    name = keyword.lower()
    if keyword == "ALTER" and words and words[0].upper() == "SYSTEM":
        name = "alter system"
    normalized = normalize_text(f"{keyword} {rest}", dialect)
    return StatementAnalysis(
        index=index,
        kind=name,
        normalized=normalized,
        fingerprint=fingerprint(normalized),
        problem="parses only as an opaque command",
        command=keyword,
    )


def _replace(
    analysis: StatementAnalysis, index: int, normalized: str, *, explain: bool
) -> StatementAnalysis:
    from dataclasses import replace

    return replace(
        analysis,
        index=index,
        normalized=normalized,
        fingerprint=fingerprint(normalized),
        explain=explain,
    )


def _copy_endpoint(tree: exp.Copy) -> str:
    files = tree.args.get("files") or []
    if len(files) != 1:
        return "file"
    target = files[0]
    if isinstance(target, exp.Identifier) and not target.quoted:
        word = target.name.upper()
        if word in ("STDIN", "STDOUT"):
            return word.lower()
        if word == "PROGRAM":
            return "program"
    return "file"


def _row_bound(tree: exp.Expr) -> int | None:
    """Most rows a query returns, when a literal ``LIMIT``/``FETCH`` or an aggregate says."""
    limit = tree.args.get("limit")
    count: exp.Expr | None = None
    if isinstance(limit, exp.Limit):
        count = limit.expression
    elif isinstance(limit, exp.Fetch):
        count = limit.args.get("count")
        if count is None:
            return 1  # FETCH FIRST ROW ONLY
    if isinstance(count, exp.Literal) and not count.is_string:
        try:
            return int(count.name)
        except ValueError:
            return None
    if (
        count is None
        and isinstance(tree, exp.Select)
        and not tree.args.get("group")
        and tree.expressions
        and all(p.find(exp.AggFunc) is not None for p in tree.expressions)
    ):
        return 1
    return None
