"""``lgpd-tasks approvals list|show|approve|deny``: decide requests from the shell."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from lgpd_tasks.cli import EXIT_OK
from lgpd_tasks.commands._common import print_json, print_table
from lgpd_tasks.errors import UsageError

if TYPE_CHECKING:
    from lgpd_tasks.approvals import ApprovalRequest, ApprovalStore, Approver
    from lgpd_tasks.policy.model import ApprovalsSpec

#: Where ``approve``/``deny`` look for an identity-provider token when ``--token`` is absent.
TOKEN_ENV = "LGPD_APPROVER_TOKEN"  # noqa: S105 - a variable name, not a secret


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "approvals", help="list and decide approval requests"
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    listing = verbs.add_parser("list", help="requests, newest first")
    listing.add_argument("--db", required=True, help="audit store URL")
    listing.add_argument("--status", choices=["pending", "approved", "denied", "expired"])
    listing.add_argument("--pipeline")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    listing.set_defaults(func=run_list)

    show = verbs.add_parser("show", help="one request with its decisions")
    show.add_argument("request_id")
    show.add_argument("--db", required=True, help="audit store URL")
    show.set_defaults(func=run_show)

    for verb, func in (("approve", run_approve), ("deny", run_deny)):
        sub = verbs.add_parser(verb, help=f"{verb} a pending request")
        sub.add_argument("request_id")
        sub.add_argument("--db", required=True, help="audit store URL")
        sub.add_argument("--as", dest="who", help="your name (default: OS user)")
        sub.add_argument(
            "--policy",
            help="policy file whose approvals section applies (approvers, "
            "require_verified_identity, oidc)",
        )
        sub.add_argument(
            "--reason", required=verb == "deny", default="", help="why (required to deny)"
        )
        sub.add_argument(
            "--token",
            help=f"identity-provider token proving who you are ('-' reads it from standard "
            f"input; default ${TOKEN_ENV}); needs --policy with approvals.oidc",
        )
        sub.set_defaults(func=func)


def _store(url: str, rules: ApprovalsSpec | None = None) -> ApprovalStore:
    """The approvals in the existing audit store at ``url`` (never created by these verbs)."""
    from lgpd_tasks.approvals import ApprovalStore
    from lgpd_tasks.audit import AuditStore

    return ApprovalStore(AuditStore.open_existing(url), rules)


def _decision(args: argparse.Namespace) -> tuple[ApprovalStore, Approver]:
    """The store under the policy's approval rules, and the approver (verified by token)."""
    from lgpd_tasks.approvals.identity import resolve_approver
    from lgpd_tasks.policy import load_policy
    from lgpd_tasks.policy.model import ApprovalsSpec

    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if token and not args.policy:
        # a usage error, found before standard input is read
        raise UsageError(
            "--token needs --policy: its approvals.oidc section says which identity provider "
            "to trust"
        )
    if token == "-":  # noqa: S105 - the stdin marker
        token = sys.stdin.readline().strip()
    rules = load_policy(args.policy).approvals if args.policy else ApprovalsSpec()
    approver = resolve_approver(rules, token=token or None, name=args.who)
    return _store(args.db, rules), approver


def run_list(args: argparse.Namespace) -> int:
    requests = _store(args.db).list_requests(status=args.status, pipeline=args.pipeline)
    if args.format == "json":
        print_json([r.to_dict() for r in requests])
        return EXIT_OK
    print_table(
        ["id", "status", "requested", "by", "scope", "statement"],
        [
            [
                r.id,
                r.status.value,
                r.requested_at[:19].replace("T", " "),
                r.requested_by if r.instance is None else f"{r.requested_by} [{r.instance}]",
                r.scope,
                r.normalized[:80],
            ]
            for r in requests
        ],
        wrap=["statement"],
    )
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    print_json(_store(args.db).get(args.request_id).to_dict())
    return EXIT_OK


def _decided(request: ApprovalRequest, verb: str) -> int:
    print(f"{request.id}: {verb}; status now {request.status.value}")
    return EXIT_OK


def run_approve(args: argparse.Namespace) -> int:
    store, approver = _decision(args)
    return _decided(store.approve(args.request_id, approver, args.reason), "approved")


def run_deny(args: argparse.Namespace) -> int:
    store, approver = _decision(args)
    return _decided(store.deny(args.request_id, approver, args.reason), "denied")
