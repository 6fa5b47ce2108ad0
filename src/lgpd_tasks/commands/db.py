"""``lgpd-tasks db init``: create or check the audit and approvals tables."""

from __future__ import annotations

import argparse
from typing import Any

from lgpd_tasks.cli import EXIT_OK


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "db", help="manage the audit database", description="Manage the audit database."
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    init = verbs.add_parser("init", help="create or check the tables (safe to repeat)")
    init.add_argument("--db", required=True, help="audit store URL")
    init.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    from lgpd_tasks.audit import AuditStore, redact_url

    version = AuditStore.from_url(args.db).init()
    print(f"audit store {redact_url(args.db)} ready (schema version {version})")
    return EXIT_OK
