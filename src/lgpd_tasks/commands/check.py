"""``lgpd-tasks check``: decide a SQL string for a scope and print the decision as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lgpd_tasks.cli import EXIT_APPROVE, EXIT_BLOCK, EXIT_OK, EXIT_USAGE
from lgpd_tasks.errors import PolicyError
from lgpd_tasks.masking import Masker
from lgpd_tasks.policy import load_policy
from lgpd_tasks.redaction import scope_columns, scrub_decision

EXIT_BY_ACTION = {"allow": EXIT_OK, "approve": EXIT_APPROVE, "block": EXIT_BLOCK}


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check",
        help="decide a SQL string for a scope (exit 0 allow, 3 approve, 4 block)",
        description=(
            "Analyse SQL and print the guard's decision as JSON: action, reasons and, per "
            "statement, kind, tables and columns read and written, and column lineage. "
            "Exits 0 for allow, 3 for approve, 4 for block, 2 for a usage or policy error."
        ),
    )
    parser.add_argument("--policy", help="policy file (default: $LGPD_POLICY_FILE)")
    parser.add_argument("--scope", required=True, help="scope name from the policy")
    parser.add_argument("--dialect", help="sqlglot dialect (default: the policy's)")
    parser.add_argument("--sql", help="the SQL text")
    parser.add_argument(
        "stdin", nargs="?", choices=["-"], help="read the SQL from standard input instead"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lgpd_tasks.sql import check

    if (args.sql is None) == (args.stdin is None):
        print("lgpd-tasks check: give the SQL with --sql TEXT or '-' (stdin)", file=sys.stderr)
        return EXIT_USAGE
    sql = args.sql if args.sql is not None else sys.stdin.read()
    policy = load_policy(args.policy)
    scope = policy.scope(args.scope)
    dialect = args.dialect or policy.dialect
    try:
        import sqlglot

        sqlglot.Dialect.get_or_raise(dialect)
    except ValueError:
        raise PolicyError(f"unknown SQL dialect {dialect!r} (sqlglot names)") from None
    decision = check(sql, scope, dialect=dialect, pii_columns=list(policy.masking.columns))
    # printed as the audit and the exceptions would quote it: a value written in double
    # quotes is "?", personal-data spans are masked (the output often lands in CI logs)
    decision = scrub_decision(decision, Masker().mask_text, scope_columns(scope))
    print(json.dumps(decision.to_dict(), indent=2, ensure_ascii=False))
    return EXIT_BY_ACTION[decision.action]
