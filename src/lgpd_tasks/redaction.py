"""What the guarded connection takes out of the texts it records, raises and shows.

The guard's normalised text holds no literal, yet a value can still travel by other roads:
a database's error message quotes the value it choked on; a string written in double
quotes (``WHERE cpf = "529.982.247-25"``, legal in SQLite and a common slip) parses as a
column name and goes into the decision as one; SQLite names an unaliased result column after
its expression's text, literals included. The functions here close those roads. Free-text
spans (CPF, e-mail, phone...) are the masker's ``mask_text``, passed in or applied last by
the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from functools import lru_cache

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy.policy import Scope
from lgpd_tasks.sql.model import Decision, LineageEdge, StatementAnalysis
from lgpd_tasks.sql.normalize import fingerprint

#: A text scrubber (``Masker.mask_text``).
Mask = Callable[[str], str]
#: Whether ``name`` is a column of ``table`` (``None``: of any table the scope grants).
IsColumn = Callable[[str | None, str], bool]

# -- database error messages ----------------------------------------------------------------

_WORD = re.compile(r"[a-z_][a-z0-9_$]*")
#: Names PostgreSQL gives constraints and indexes by default (``customers_cpf_key``...).
_CONSTRAINT_NAME = re.compile(r"[a-z_][a-z0-9_$]*_(?:key|pkey|fkey|check|excl|idx|not_null)")
#: Dates and times a message echoes (``1964-09-60``, ``20/09/1964``, ``12:30:00``).
_DATE_LIKE = re.compile(
    r"(?<![\w.])\d{1,5}[-/.]\d{1,2}[-/.]\d{1,5}"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:[+-]\d{2}(?::?\d{2})?)?(?![\w.])"
    r"|(?<![\w.:])\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?![\w.:])"
)
#: Runs of four digits or more: part of a document, phone or card number, never a position.
_LONG_NUMBER = re.compile(r"\b\d{4,}\b")
#: The PL/pgSQL statements whose message is text the function's author wrote.
_USER_RAISED = re.compile(r"\bat (?:RAISE|ASSERT)\s*$")


def scrub_error(err: BaseException, known: str) -> str:
    """The message of a driver exception ``err`` without the values it may carry.

    A message a database function or trigger raised (``RAISE EXCEPTION 'cliente %', nome``,
    SQLSTATE class P0, or any SQLSTATE raised from a ``RAISE``) is the function author's free
    text and may quote anything: it is withheld whole. Any other message goes through
    :func:`scrub_message` with the ``known`` names.
    """
    sqlstate = getattr(err, "sqlstate", None)
    diag = getattr(err, "diag", None)
    context = str(getattr(diag, "context", None) or "").strip().splitlines()
    if (sqlstate or "").startswith("P0") or (context and _USER_RAISED.search(context[0])):
        return (
            f"message withheld (SQLSTATE {sqlstate or 'unknown'}): raised by a database "
            "function or trigger, its text may quote row values"
        )
    return scrub_message(str(err), known)


def scrub_message(message: str, known: str) -> str:
    """A database's message without the values it may quote.

    Only the first line is kept (``DETAIL``/``CONTEXT`` lines repeat keys, rows and
    parameters). A quoted span survives only when it names something in ``known`` (the
    statement's normalised text, which holds no literal, and the scope's names) or looks
    like a constraint's default name; an unknown one is taken to run to the last quote of
    its kind, since a value may hold quotes itself. Dates, times and runs of four digits
    or more become ``?``.

    >>> scrub_message('invalid input syntax for type integer: "Maria"\\nCONTEXT: ...', "SELECT")
    'invalid input syntax for type integer: "?"'
    >>> scrub_message('duplicate key value violates unique constraint "customers_cpf_key"\\n'
    ...               'DETAIL:  Key (cpf)=(123) already exists.', "INSERT INTO customers (cpf)")
    'duplicate key value violates unique constraint "customers_cpf_key"'
    >>> scrub_message('invalid input syntax for type integer: "apelido "Tita" de Ana"', "")
    'invalid input syntax for type integer: "?"'
    >>> scrub_message("date too large (after year 10K): '19640-09-20'", "")
    "date too large (after year 10K): '?'"
    >>> scrub_message("date field value out of range: 1964-09-60 at character 8", "")
    'date field value out of range: ? at character 8'
    """
    lines = message.strip().splitlines()
    if not lines:
        return ""
    names = set(_WORD.findall(known.lower()))

    def keep(text: str) -> bool:
        text = text.lower()
        return text in names or _CONSTRAINT_NAME.fullmatch(text) is not None

    line = _scrub_quoted(lines[0].strip(), '"', keep)
    line = _scrub_quoted(line, "'", keep)
    return _LONG_NUMBER.sub("?", _DATE_LIKE.sub("?", line))


def _scrub_quoted(line: str, quote: str, keep: Callable[[str], bool]) -> str:
    """``line`` with every ``quote``-quoted span ``keep`` refuses replaced by ``quote?quote``.

    The first refused span runs to the last ``quote`` of the line (the value may hold the
    quote character, so pairing quotes from the left could leave part of it outside); an
    unpaired quote runs to the end of the line.
    """
    out: list[str] = []
    pos = 0
    while (start := line.find(quote, pos)) >= 0:
        end = line.find(quote, start + 1)
        if end >= 0 and keep(line[start + 1 : end]):
            out.append(line[pos : end + 1])
            pos = end + 1
            continue
        out.append(f"{line[pos:start]}{quote}?{quote}")
        pos = line.rfind(quote) + 1 if end >= 0 else len(line)
        break
    out.append(line[pos:])
    return "".join(out)


# -- result column labels -------------------------------------------------------------------

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|\?column\?")


def is_plain_label(label: str) -> bool:
    """A label that is a bare name (``cpf``, ``?column?``): no expression text to clean."""
    return _PLAIN_NAME.fullmatch(label) is not None


@lru_cache(maxsize=4096)
def label_without_literals(label: str, dialect: str) -> str:
    """A result column's label with the literals of its expression replaced by ``?``.

    SQLite labels an unaliased expression with its text (``cpf = '529.982.247-25'``).
    Comments go too; a label that cannot be tokenised is replaced by ``?`` whole.

    >>> label_without_literals("coalesce(email, 'ana@pf.gov.br')", "sqlite")
    'coalesce(email, ?)'
    >>> label_without_literals("nome", "sqlite")
    'nome'
    """
    if is_plain_label(label):
        return label
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.errors import SqlglotError

    from lgpd_tasks.sql.normalize import PLACEHOLDER, is_literal_token

    try:
        tokens = Dialect.get_or_raise(dialect).tokenize(label)
    except (SqlglotError, ValueError):
        return PLACEHOLDER
    parts: list[str] = []
    pos = 0
    changed = False
    for token in tokens:
        gap = label[pos : token.start]
        if gap.strip():  # a comment between tokens
            changed = True
        parts.append(" " if gap else "")
        if is_literal_token(token):
            parts.append(PLACEHOLDER)
            changed = True
        else:
            parts.append(label[token.start : token.end + 1])
        pos = token.end + 1
    if label[pos:].strip():
        changed = True
    return "".join(parts).strip() if changed else label


@lru_cache(maxsize=1024)
def explicit_aliases(sql: str, dialect: str) -> frozenset[str]:
    """The output names a statement gives its result columns itself (``AS "2023"``).

    Such a label is the author's, not an expression's text, and is kept as written (its
    personal-data spans are still masked). A statement that does not parse has none.

    >>> sorted(explicit_aliases('SELECT id, count(*) AS "2023", cpf = 1 FROM t', "sqlite"))
    ['2023']
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except (SqlglotError, ValueError):
        return frozenset()
    if isinstance(tree, exp.Query):
        projections: list[object] = list(tree.selects)
    else:
        returning = tree.args.get("returning")
        projections = list(returning.expressions) if returning is not None else []
    return frozenset(p.alias for p in projections if isinstance(p, exp.Alias) and p.alias)


# -- the guard's decision -------------------------------------------------------------------

_QUOTED_NAME = re.compile(r'"((?:[^"]|"")*)"')
_HINT = " (a double-quoted name that is no column here; string values take single quotes)"


def scrub_decision(decision: Decision, mask: Mask, is_column: IsColumn) -> Decision:
    """``decision`` without the values that reached it as names, for the audit and exceptions.

    A name written in double quotes that is no column of the tables it is looked up in (a
    reference the guard cannot attribute, a column the catalogue does not list, or any quoted
    name of a statement the guard does not understand) becomes ``"?"`` in the normalised
    text and ``?`` in the reasons, column lists and lineage; every text then goes through
    ``mask``. The action and the reasons' rules never change. The fingerprints are those of
    the scrubbed texts, so one statement keeps one fingerprint and none is a hash of a value;
    a decision with nothing to scrub is returned as it is.
    """
    hidden = frozenset(name for s in decision.statements for name in _hidden(s, is_column))
    if not hidden and mask(decision.normalized) == decision.normalized:
        return decision
    scrub = _Scrubber(hidden, mask)
    statements = tuple(scrub.statement(s) for s in decision.statements)
    reasons = tuple(dict.fromkeys(scrub.reason(r) for r in decision.reasons))
    normalized = ";\n".join(s.normalized for s in statements)
    return replace(
        decision,
        reasons=reasons,
        statements=statements,
        normalized=normalized,
        fingerprint=fingerprint(normalized),
    )


def scope_columns(
    scope: Scope, catalogue: Callable[[str], Iterable[str] | None] | None = None
) -> IsColumn:
    """The :data:`IsColumn` test of a scope: its grants, and ``catalogue``'s columns when given.

    With no table, a name counts when the scope grants it anywhere (as a column or as part
    of a table name).

    >>> from lgpd_tasks.policy import Policy
    >>> policy = Policy.from_dict({
    ...     "version": 1, "dialect": "postgres",
    ...     "purposes": {"report": {"legal_basis": "legitimate_interest", "retention": "30d"}},
    ...     "scopes": {"report.extract": {"purpose": "report", "read": {"crm.clientes": ["cpf"]}}},
    ... })
    >>> is_column = scope_columns(policy.scope("report.extract"))
    >>> is_column("crm.clientes", "cpf"), is_column(None, "CRM"), is_column(None, "529.982.247-25")
    (True, True, False)
    """
    granted_anywhere = frozenset(
        part.lower()
        for grants in (scope.read, scope.write)
        for table, columns in grants.items()
        for part in (*table.split("."), *columns)
    )

    def is_column(table: str | None, name: str) -> bool:
        if table is None:
            return name.lower() in granted_anywhere
        granted = (scope.readable_columns(table) or frozenset()) | (
            scope.writable_columns(table) or frozenset()
        )
        return name in granted or (catalogue is not None and name in (catalogue(table) or ()))

    return is_column


def _hidden(statement: StatementAnalysis, is_column: IsColumn) -> set[str]:
    """The names of ``statement`` written in double quotes that name no column, nor a table
    (or part of one) the scope grants."""
    quoted = {m.group(1).replace('""', '"') for m in _QUOTED_NAME.finditer(statement.normalized)}
    if not quoted:
        return set()
    if statement.problem is not None:  # nothing was resolved: any unknown name is suspect
        return {name for name in quoted if not is_column(None, name)}
    suspects = set(statement.unresolved_columns)
    for table, columns in (*statement.columns_read.items(), *statement.columns_written.items()):
        suspects |= {c for c in columns if not is_column(table, c)}
    # a table (or a reference's qualifier) the scope grants nowhere, written in double
    # quotes, may be a value too: FROM "Maria Souza"
    for name in (*statement.tables_read, *statement.tables_written, *statement.unresolved_columns):
        suspects |= {n for n in (name, *name.split(".")) if not is_column(None, n)}
    return suspects & quoted


class _Scrubber:
    """Rewrites the texts and names of a decision: hidden names out, then ``mask``."""

    def __init__(self, hidden: Iterable[str], mask: Mask) -> None:
        self.hidden = frozenset(hidden)
        self.mask = mask
        # longest first, so that a name inside another is not replaced in it first
        ordered = sorted(self.hidden, key=len, reverse=True)
        self._quoted = [('"' + n.replace('"', '""') + '"', n) for n in ordered]
        self._bare = (
            re.compile("|".join(rf"(?<!\w){re.escape(n)}(?!\w)" for n in ordered))
            if ordered
            else None
        )

    def sql(self, text: str) -> str:
        for quoted, _ in self._quoted:
            text = text.replace(quoted, '"?"')
        return self.mask(text)

    def text(self, text: str, placeholder: str = '"?"') -> str:
        if self._bare is not None:
            text = self._bare.sub(placeholder, text)
        return self.mask(text)

    def name(self, name: str) -> str:
        return "?" if name in self.hidden else self.text(name, "?")

    def names(self, names: Iterable[str]) -> frozenset[str]:
        return frozenset(self.name(n) for n in names)

    def columns(self, by_table: Mapping[str, frozenset[str]]) -> Mapping[str, frozenset[str]]:
        merged: dict[str, frozenset[str]] = {}
        for table, columns in by_table.items():
            key = self.name(table)
            merged[key] = merged.get(key, frozenset()) | self.names(columns)
        return merged

    def statement(self, s: StatementAnalysis) -> StatementAnalysis:
        normalized = self.sql(s.normalized)
        return replace(
            s,
            normalized=normalized,
            fingerprint=fingerprint(normalized),
            columns_read=self.columns(s.columns_read),
            columns_written=self.columns(s.columns_written),
            lineage=tuple(
                LineageEdge(self.name(e.target), tuple(self.name(src) for src in e.sources))
                for e in s.lineage
            ),
            output_columns=tuple(self.name(c) for c in s.output_columns),
            output_sources=tuple(frozenset(map(self.name, o)) for o in s.output_sources),
            unresolved_columns=self.names(s.unresolved_columns),
            tables_read=self.names(s.tables_read),
            tables_written=self.names(s.tables_written),
        )

    def reason(self, r: Reason) -> Reason:
        message = self.text(r.message)
        if r.column is not None and r.column in self.hidden:
            message += _HINT
        return replace(
            r,
            message=message,
            table=None if r.table is None else self.name(r.table),
            column=None if r.column is None else self.name(r.column),
        )
