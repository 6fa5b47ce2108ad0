"""``lgpd-tasks exec``: run statements through a GuardedConnection, exactly as a task would."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lgpd_tasks.cli import EXIT_FAILED, EXIT_OK
from lgpd_tasks.commands._common import add_sql_argument, print_rows, read_sql, split_statements


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "exec",
        help="run SQL through the guard, the approvals and the audit",
        description=(
            "Run statements as a task would (identity cli:<IDENTITY>): blocked statements "
            "never reach the database, risky ones need an approval, results come back masked. "
            "Exit codes: 0 ran, 3 needs approval, 4 blocked, 2 usage or policy error, "
            "1 the database failed."
        ),
    )
    parser.add_argument("--policy", required=True, help="policy file")
    parser.add_argument("--scope", required=True, help="scope name in the policy")
    parser.add_argument("--db", required=True, help="target database URL")
    parser.add_argument("--audit", required=True, help="audit store URL")
    parser.add_argument("--as", dest="who", help="your name in the audit (default: OS user)")
    parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
    add_sql_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lgpd_tasks.connection import connect
    from lgpd_tasks.errors import StatementFailed
    from lgpd_tasks.identity import TaskIdentity
    from lgpd_tasks.policy import load_policy

    policy = load_policy(args.policy)
    scope = policy.scope(args.scope)
    statements = split_statements(read_sql(args), policy.dialect)
    if not statements:
        print("lgpd-tasks: no SQL given", file=sys.stderr)
        return 2
    identity = TaskIdentity.for_cli(args.who)
    conn = connect(args.db, policy=policy, scope=scope, identity=identity, audit=args.audit)
    try:
        for sql in statements:
            try:
                cur = conn.execute(sql)
            except StatementFailed as err:
                print(f"lgpd-tasks: {err}", file=sys.stderr)
                return EXIT_FAILED
            if cur.description is not None:
                columns = [str(d[0]) for d in cur.description]
                rows = cur.fetchall()
                print_rows(columns, rows, args.format)
            else:
                affected = cur.rowcount
                if args.format == "table":
                    print(f"{affected} row(s) affected")
            cur.close()
            conn.commit()
    finally:
        conn.close()
    return EXIT_OK
