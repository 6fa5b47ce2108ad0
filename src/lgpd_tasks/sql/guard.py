"""The guard: run every rule over a string's statements and decide allow, approve or block."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from lgpd_tasks.errors import Reason
from lgpd_tasks.policy import Scope
from lgpd_tasks.sql.analysis import AnswerCache, analyze, scope_key
from lgpd_tasks.sql.model import Action, Catalog, Decision, Rule, RuleContext, StatementAnalysis
from lgpd_tasks.sql.normalize import fingerprint
from lgpd_tasks.sql.rules import DEFAULT_RULES

_DEFAULT_CONTEXT = RuleContext()


def decide(
    statements: Sequence[StatementAnalysis],
    scope: Scope,
    *,
    rules: Sequence[Rule] = DEFAULT_RULES,
    context: RuleContext | None = None,
) -> Decision:
    """Apply ``rules``: any block reason blocks, else any approve reason needs approval.

    >>> from lgpd_tasks.policy import Policy
    >>> policy = Policy.from_dict({"version": 1, "purposes": {"p": {
    ...     "legal_basis": "consent", "retention": "30d"}}, "scopes": {"s": {"purpose": "p",
    ...     "read": {"crm.customers": ["id"]}, "write": {"crm.customers": "*"}}}})
    >>> decide(analyze("DELETE FROM crm.customers", "postgres"), policy.scope("s")).action
    'approve'
    >>> decide(analyze("SELECT cpf FROM crm.customers", "postgres"), policy.scope("s")).rules
    ('read_scope',)
    """
    context = context or _DEFAULT_CONTEXT
    reasons: dict[Reason, None] = {}
    for rule in rules:
        for reason in rule(statements, scope, context):
            reasons[reason] = None
    ordered = tuple(sorted(reasons, key=lambda r: r.statement))
    action: Action = "allow"
    if any(r.action == "block" for r in ordered):
        action = "block"
    elif ordered:
        action = "approve"
    normalized = ";\n".join(s.normalized for s in statements)
    return Decision(
        action=action,
        reasons=ordered,
        statements=tuple(statements),
        scope=scope.name,
        normalized=normalized,
        fingerprint=fingerprint(normalized),
    )


def check(
    sql: str,
    scope: Scope,
    *,
    dialect: str | None = None,
    catalog: Catalog | None = None,
    pii_columns: Collection[str] | None = None,
) -> Decision:
    """Analyse ``sql`` and decide it for ``scope``; cached per text and scope, and reused
    for any catalogue that answers the questions the analysis asked it the same (so a new
    connection's catalogue reuses the previous connection's decision).

    ``pii_columns`` adds names (usually the policy's ``masking.columns``) to the well-known
    personal-data names that the ``pii_read`` trigger looks for.
    """
    dialect = dialect or scope.dialect
    pii = frozenset(c.lower() for c in pii_columns) if pii_columns else frozenset()
    return _DECISIONS.get(
        (sql, dialect, scope_key(scope), pii),
        catalog,
        lambda answering: _decide_fresh(sql, dialect, answering, scope, pii),
    )


def clear_cache() -> None:
    """Forget cached analyses and decisions."""
    from lgpd_tasks.sql.analysis import clear_cache as clear_analysis

    _DECISIONS.clear()
    clear_analysis()


#: Decisions per (text, dialect, scope, personal-data names), with the catalogue answers used.
_DECISIONS: AnswerCache[Decision] = AnswerCache()


def _decide_fresh(
    sql: str, dialect: str, catalog: Catalog, scope: Scope, pii: frozenset[str]
) -> Decision:
    statements = analyze(sql, dialect, catalog=catalog, scope=scope)
    context = RuleContext.with_masked_columns(pii) if pii else _DEFAULT_CONTEXT
    return decide(statements, scope, context=context)
