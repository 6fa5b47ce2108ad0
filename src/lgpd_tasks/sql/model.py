"""What the analysis says about one statement, the guard's decision, and the rule contract."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope

Action = Literal["allow", "approve", "block"]

#: Column names treated as personal data by the ``pii_read`` trigger, besides the policy's
#: ``masking.columns``. Exact, lowercase names; kept short on purpose (no guessing).
WELL_KNOWN_PII_COLUMNS: frozenset[str] = frozenset(
    {
        "cpf",
        "cnpj",
        "rg",
        "nome",
        "name",
        "nome_completo",
        "full_name",
        "email",
        "e_mail",
        "telefone",
        "celular",
        "phone",
        "endereco",
        "address",
        "cep",
        "data_nascimento",
        "nascimento",
        "birth_date",
        "date_of_birth",
        "cartao",
        "card_number",
        "pis",
        "cns",
    }
)


class Catalog(Protocol):
    """The database catalogue, used to expand ``SELECT *`` and ``INSERT`` without columns."""

    def columns(self, table: str) -> Sequence[str] | None:
        """Column names of ``table`` (``schema.table``), or ``None`` when it is unknown."""
        ...


@dataclass(frozen=True)
class LineageEdge:
    """One output or written column and the source columns its value is computed from."""

    target: str
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "sources": list(self.sources)}


@dataclass(frozen=True)
class StatementAnalysis:
    """Everything the guard and the audit need about one statement; it holds no literal value."""

    index: int
    kind: str
    normalized: str
    fingerprint: str
    tables_read: frozenset[str] = frozenset()
    tables_written: frozenset[str] = frozenset()
    columns_read: Mapping[str, frozenset[str]] = field(default_factory=dict)
    columns_written: Mapping[str, frozenset[str]] = field(default_factory=dict)
    lineage: tuple[LineageEdge, ...] = ()
    has_where: bool = False
    where_always_true: bool = False
    functions: frozenset[str] = frozenset()
    output_columns: tuple[str, ...] = ()
    #: For each output column, by position, the source columns (``schema.table.column``)
    #: whose values it may carry: a projection that only counts or tests them (``count``,
    #: ``length``, a comparison) at the top level carries none. Results are masked by it.
    output_sources: tuple[frozenset[str], ...] = ()
    #: Function names sqlglot does not know (user-defined or dialect-specific), lowercase.
    unknown_functions: frozenset[str] = frozenset()
    #: Column references that resolve to no table in reach (fail closed: blocked).
    unresolved_columns: frozenset[str] = frozenset()
    #: Why the statement could not be understood (``kind`` is then ``unparsable``/``command``).
    problem: str | None = None
    #: The command keyword for statements sqlglot keeps opaque (``DO``, ``CALL``...).
    command: str | None = None
    #: ``COPY`` endpoint: ``stdin``, ``stdout``, ``file`` or ``program``.
    copy_endpoint: str | None = None
    #: The most rows a query can return when it is known (a literal ``LIMIT``, an aggregate).
    row_bound: int | None = None
    #: Wrapped in ``EXPLAIN`` (which counts as the statement itself).
    explain: bool = False
    #: ``insert``/``update``/``delete`` anywhere in it, data-modifying CTEs included.
    write_kinds: frozenset[str] = frozenset()
    #: Tables deleted from or updated with no ``WHERE`` or an always-true one, anywhere.
    unbounded_writes: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "normalized": self.normalized,
            "fingerprint": self.fingerprint,
            "tables_read": sorted(self.tables_read),
            "tables_written": sorted(self.tables_written),
            "columns_read": {t: sorted(c) for t, c in sorted(self.columns_read.items())},
            "columns_written": {t: sorted(c) for t, c in sorted(self.columns_written.items())},
            "lineage": [edge.to_dict() for edge in self.lineage],
            "has_where": self.has_where,
            "where_always_true": self.where_always_true,
            "functions": sorted(self.functions),
            "output_columns": list(self.output_columns),
        }


@dataclass(frozen=True)
class Decision:
    """The guard's verdict on a SQL string: ``allow``, ``approve`` or ``block``, and why."""

    action: Action
    reasons: tuple[Reason, ...]
    statements: tuple[StatementAnalysis, ...]
    scope: str
    normalized: str
    fingerprint: str

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def needs_approval(self) -> bool:
        return self.action == "approve"

    @property
    def rules(self) -> tuple[str, ...]:
        """Rule ids of the reasons, in order, without repeats."""
        return tuple(dict.fromkeys(r.rule for r in self.reasons))

    def summary(self) -> str:
        """One line for error messages: action, scope and each reason (names only, no values)."""
        if not self.reasons:
            return f"{self.action} in scope {self.scope}"
        parts = "; ".join(f"[{r.rule}] {r.message}" for r in self.reasons)
        return f"{self.action} in scope {self.scope}: {parts}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "scope": self.scope,
            "reasons": [r.to_dict() for r in self.reasons],
            "statements": [
                {
                    "index": s.index,
                    "kind": s.kind,
                    "tables_read": sorted(s.tables_read),
                    "tables_written": sorted(s.tables_written),
                    "columns_read": {t: sorted(c) for t, c in sorted(s.columns_read.items())},
                    "columns_written": {t: sorted(c) for t, c in sorted(s.columns_written.items())},
                    "lineage": [edge.to_dict() for edge in s.lineage],
                }
                for s in self.statements
            ],
            "fingerprint": self.fingerprint,
            "normalized": self.normalized,
        }


@dataclass(frozen=True)
class RuleContext:
    """What rules may know besides the statements and the scope."""

    #: Lowercase column names whose reading triggers ``pii_read``.
    pii_columns: frozenset[str] = WELL_KNOWN_PII_COLUMNS

    @classmethod
    def with_masked_columns(cls, names: Collection[str]) -> RuleContext:
        """Well-known PII names plus the policy's ``masking.columns``."""
        return cls(WELL_KNOWN_PII_COLUMNS | {n.lower() for n in names})


class Rule(Protocol):
    """A guard rule: looks at every statement of a string and yields reasons (none = no say)."""

    def __call__(
        self, statements: Sequence[StatementAnalysis], scope: Scope, context: RuleContext
    ) -> Iterable[Reason]: ...


@dataclass(frozen=True, eq=False)
class StaticCatalog:
    """A catalogue given as a mapping, for tests and for callers that know their tables.

    >>> StaticCatalog({"crm.customers": ("id", "nome")}).columns("crm.customers")
    ('id', 'nome')
    """

    tables: Mapping[str, Sequence[str]]

    def columns(self, table: str) -> Sequence[str] | None:
        return self.tables.get(table)
