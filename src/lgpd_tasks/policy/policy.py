"""The loaded policy: purposes and scopes with table names resolved, ready for the guard."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from lgpd_tasks.errors import ScopeWidening, UnknownScope
from lgpd_tasks.policy.model import ApprovalsSpec, CredentialsSpec, MaskingSpec, PolicySpec
from lgpd_tasks.policy.names import normalize_identifier, normalize_table_name

ALL = "*"
"""The column grant that means every column of a table."""

Grants = Mapping[str, frozenset[str]]
"""Table (``schema.table``) -> granted columns; ``{"*"}`` grants every column."""


@dataclass(frozen=True)
class Purpose:
    """A purpose of processing and its legal basis (LGPD Art. 6 I, Art. 7)."""

    name: str
    legal_basis: str
    retention: timedelta
    description: str = ""
    data_subjects: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scope:
    """What one task may touch. Build with :meth:`Policy.scope`; narrow with :meth:`narrow`.

    >>> policy = Policy.from_dict({
    ...     "version": 1, "dialect": "postgres",
    ...     "purposes": {"report": {"legal_basis": "legitimate_interest", "retention": "30d"}},
    ...     "scopes": {"report.extract": {"purpose": "report",
    ...                                   "read": {"crm.customers": ["id", "cidade"]}}},
    ... })
    >>> scope = policy.scope("report.extract")
    >>> scope.can_read("crm.customers", "cidade"), scope.can_read("crm.customers", "cpf")
    (True, False)
    """

    name: str
    purpose: Purpose
    dialect: str
    read: Grants = field(default_factory=dict)
    write: Grants = field(default_factory=dict)
    max_rows: int | None = None
    require_approval: frozenset[str] = frozenset()
    allow_multiple_statements: bool = False
    narrowed: bool = False

    def readable_columns(self, table: str) -> frozenset[str] | None:
        """Granted read columns of ``table`` (``{"*"}`` for all), or ``None`` if not granted."""
        return self.read.get(table)

    def writable_columns(self, table: str) -> frozenset[str] | None:
        return self.write.get(table)

    def can_read(self, table: str, column: str | None = None) -> bool:
        cols = self.read.get(table)
        return cols is not None and (column is None or ALL in cols or column in cols)

    def can_write(self, table: str, column: str | None = None) -> bool:
        cols = self.write.get(table)
        return cols is not None and (column is None or ALL in cols or column in cols)

    def can_write_all(self, table: str) -> bool:
        """Whether the write grant is ``"*"`` (needed for ``DELETE`` and ``MERGE``)."""
        cols = self.write.get(table)
        return cols is not None and ALL in cols

    def narrow(
        self,
        *,
        read: Mapping[str, Iterable[str] | str] | None = None,
        write: Mapping[str, Iterable[str] | str] | None = None,
        max_rows: int | None = None,
    ) -> Scope:
        """A copy that grants at most what is given; anything beyond this scope raises.

        ``None`` keeps a side as it is; ``{}`` removes every grant of that side.
        """
        new_read = self.read if read is None else self._narrowed(self.read, read, "read")
        new_write = self.write if write is None else self._narrowed(self.write, write, "write")
        if max_rows is not None and self.max_rows is not None and max_rows > self.max_rows:
            raise ScopeWidening(self.name, f"max_rows {max_rows} exceeds {self.max_rows}")
        return replace(
            self,
            read=MappingProxyType(dict(new_read)),
            write=MappingProxyType(dict(new_write)),
            max_rows=max_rows if max_rows is not None else self.max_rows,
            narrowed=True,
        )

    def _narrowed(
        self, current: Grants, wanted: Mapping[str, Iterable[str] | str], side: str
    ) -> dict[str, frozenset[str]]:
        result: dict[str, frozenset[str]] = {}
        for raw_table, raw_cols in wanted.items():
            table = normalize_table_name(raw_table, self.dialect)
            granted = current.get(table)
            if granted is None:
                raise ScopeWidening(self.name, f"{side} of table {table} is not granted")
            cols = _columns(raw_cols, self.dialect)
            if ALL in cols and ALL not in granted:
                raise ScopeWidening(self.name, f"{side} of every column of {table} is not granted")
            if ALL not in granted:
                extra = sorted(cols - granted)
                if extra:
                    raise ScopeWidening(self.name, f"{side} of {table}.{extra[0]} is not granted")
            result[table] = cols
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "purpose": self.purpose.name,
            "legal_basis": self.purpose.legal_basis,
            "read": {t: sorted(c) for t, c in self.read.items()},
            "write": {t: sorted(c) for t, c in self.write.items()},
            "max_rows": self.max_rows,
            "require_approval": sorted(self.require_approval),
            "narrowed": self.narrowed,
        }


def _columns(raw: Iterable[str] | str, dialect: str) -> frozenset[str]:
    if raw == ALL:
        return frozenset({ALL})
    if isinstance(raw, str):
        raw = [raw]
    return frozenset(_column_name(c, dialect) for c in raw)


def _column_name(raw: str, dialect: str) -> str:
    if raw == ALL:
        return ALL
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return normalize_identifier(raw[1:-1], dialect, quoted=True)
    return normalize_identifier(raw, dialect)


@dataclass(frozen=True)
class Policy:
    """A validated policy file. Load with :func:`lgpd_tasks.policy.load_policy`."""

    spec: PolicySpec
    source: str = "<policy>"
    purposes: Mapping[str, Purpose] = field(default_factory=dict)
    scopes: Mapping[str, Scope] = field(default_factory=dict)

    @property
    def dialect(self) -> str:
        return self.spec.dialect

    @property
    def masking(self) -> MaskingSpec:
        return self.spec.masking

    @property
    def approvals(self) -> ApprovalsSpec:
        return self.spec.approvals

    @property
    def credentials(self) -> CredentialsSpec:
        return self.spec.credentials

    def scope(self, name: str) -> Scope:
        """The scope called ``name``; an unknown name is an error, never "allow everything"."""
        try:
            return self.scopes[name]
        except KeyError:
            raise UnknownScope(name, self.source, list(self.scopes)) from None

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], source: str = "<policy>") -> Policy:
        from lgpd_tasks.policy.loader import policy_from_document

        return policy_from_document(document, source)

    @classmethod
    def build(cls, spec: PolicySpec, source: str) -> Policy:
        """Resolve names in a validated spec (the loader checks references first)."""
        dialect = spec.dialect
        purposes = {
            name: Purpose(
                name=name,
                legal_basis=p.legal_basis,
                retention=p.retention,
                description=p.description,
                data_subjects=tuple(p.data_subjects),
            )
            for name, p in spec.purposes.items()
        }
        scopes: dict[str, Scope] = {}
        for name, s in spec.scopes.items():
            scopes[name] = Scope(
                name=name,
                purpose=purposes[s.purpose],
                dialect=dialect,
                read=MappingProxyType(
                    {
                        normalize_table_name(t, dialect): _columns(c, dialect)
                        for t, c in s.read.items()
                    }
                ),
                write=MappingProxyType(
                    {
                        normalize_table_name(t, dialect): _columns(c, dialect)
                        for t, c in s.write.items()
                    }
                ),
                max_rows=s.max_rows,
                require_approval=frozenset(s.require_approval),
                allow_multiple_statements=s.allow_multiple_statements,
            )
        return cls(
            spec=spec,
            source=source,
            purposes=MappingProxyType(purposes),
            scopes=MappingProxyType(scopes),
        )
