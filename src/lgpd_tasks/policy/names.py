"""Table and column names resolved with a dialect's identifier rules, as policy and guard share them."""

from __future__ import annotations

from functools import lru_cache

from sqlglot import exp
from sqlglot.errors import ParseError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

#: The schema an unqualified table name resolves to, per sqlglot dialect.
DEFAULT_SCHEMAS: dict[str, str] = {
    "postgres": "public",
    "redshift": "public",
    "sqlite": "main",
    "duckdb": "main",
    "tsql": "dbo",
}


def default_schema(dialect: str) -> str | None:
    """The schema unqualified names resolve to, or ``None`` when the dialect has none."""
    return DEFAULT_SCHEMAS.get(dialect)


def normalize_identifier(name: str, dialect: str, *, quoted: bool = False) -> str:
    """Fold an identifier as the dialect does: unquoted names fold case, quoted ones keep it.

    >>> normalize_identifier("CPF", "postgres")
    'cpf'
    >>> normalize_identifier("CPF", "postgres", quoted=True)
    'CPF'
    """
    ident = exp.to_identifier(name, quoted=quoted)
    assert ident is not None
    normalized = normalize_identifiers(ident, dialect=dialect)
    return str(normalized.name)


@lru_cache(maxsize=4096)
def normalize_table_name(name: str, dialect: str) -> str:
    """``schema.table`` for a name written as in SQL, with the default schema filled in.

    >>> normalize_table_name("CRM.Customers", "postgres")
    'crm.customers'
    >>> normalize_table_name('"Crm".customers', "postgres")
    'Crm.customers'
    >>> normalize_table_name("customers", "sqlite")
    'main.customers'

    Raises ``ValueError`` when ``name`` is not a table name.
    """
    try:
        table = exp.to_table(name, dialect=dialect)
    except (ParseError, ValueError) as err:
        raise ValueError(f"not a table name: {name!r}") from err
    if not isinstance(table, exp.Table) or not table.name:
        raise ValueError(f"not a table name: {name!r}")
    table = normalize_identifiers(table, dialect=dialect)
    return qualified_name(table.name, table.db or None, dialect)


def qualified_name(table: str, schema: str | None, dialect: str) -> str:
    """Join already-normalised parts, resolving a missing schema to the dialect default."""
    schema = schema or default_schema(dialect)
    return f"{schema}.{table}" if schema else table
