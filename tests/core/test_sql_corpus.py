"""The guard decides every statement of the corpus as its fixture file says."""

from __future__ import annotations

import importlib
import json

import pytest

from lgpd_tasks.sql import check
from tests.core.sql_corpus import Case, cases, catalog, policy

CASES = cases()


def test_corpus_is_large_and_covers_every_rule() -> None:
    from lgpd_tasks.sql.rules import DEFAULT_RULES

    assert len(CASES) >= 150
    rule_ids = {c.rule.split(".")[0] for c in CASES if c.rule}
    named = {importlib.import_module(rule.__module__).RULE for rule in DEFAULT_RULES}
    assert named <= rule_ids, f"rules without a corpus case: {sorted(named - rule_ids)}"
    assert {c.action for c in CASES} == {"allow", "approve", "block"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corpus_decision(case: Case) -> None:
    pol = policy(case.policy_file)
    scope = pol.scope(case.scope)
    decision = check(
        case.sql,
        scope,
        catalog=catalog() if case.use_catalog else None,
        pii_columns=list(pol.masking.columns),
    )
    explained = json.dumps([r.to_dict() for r in decision.reasons], indent=1)
    assert decision.action == case.action, explained
    if case.action == "allow":
        assert decision.reasons == ()
    else:
        assert case.rule is not None, "a refused case names its rule"
        assert case.rule in decision.rules, explained
        named = [r for r in decision.reasons if r.rule == case.rule]
        if case.table is not None:
            assert any(r.table == case.table for r in named), explained
        if case.column is not None:
            assert any(r.column == case.column for r in named), explained
