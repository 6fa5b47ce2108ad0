"""SQL analysis (sqlglot) and the guard that decides allow, approve or block per scope."""

from lgpd_tasks.sql.analysis import analyze
from lgpd_tasks.sql.guard import check, clear_cache, decide
from lgpd_tasks.sql.model import (
    WELL_KNOWN_PII_COLUMNS,
    Catalog,
    Decision,
    LineageEdge,
    Rule,
    RuleContext,
    StatementAnalysis,
    StaticCatalog,
)
from lgpd_tasks.sql.normalize import fingerprint
from lgpd_tasks.sql.rules import DEFAULT_RULES


def normalize_sql(sql: str, dialect: str) -> tuple[str, str]:
    """``(normalized, fingerprint)`` of a SQL string: literals become ``?``, comments go.

    >>> normalize_sql("select * from t where cpf = '123.456.789-09' -- x", "postgres")[0]
    'SELECT * FROM t WHERE cpf = ?'
    """
    normalized = ";\n".join(s.normalized for s in analyze(sql, dialect))
    return normalized, fingerprint(normalized)


__all__ = [
    "DEFAULT_RULES",
    "WELL_KNOWN_PII_COLUMNS",
    "Catalog",
    "Decision",
    "LineageEdge",
    "Rule",
    "RuleContext",
    "StatementAnalysis",
    "StaticCatalog",
    "analyze",
    "check",
    "clear_cache",
    "decide",
    "normalize_sql",
]
