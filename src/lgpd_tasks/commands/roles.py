"""``lgpd-tasks roles issue|revoke|sweep``: per-task PostgreSQL roles from the shell."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from lgpd_tasks.cli import EXIT_FAILED, EXIT_OK
from lgpd_tasks.commands._common import print_json, print_table
from lgpd_tasks.credentials import PostgresRoleBroker
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, load_policy, parse_duration
from lgpd_tasks.policy.model import CredentialsSpec, check_credential_ttl

if TYPE_CHECKING:
    from lgpd_tasks.audit import AuditStore


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "roles", help="issue, revoke and sweep per-task PostgreSQL roles"
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    issue = verbs.add_parser(
        "issue", help="create a scoped login role and print its connection URL"
    )
    issue.add_argument("--db", required=True, help="PostgreSQL URL of an administrator")
    issue.add_argument("--policy", required=True, help="policy file")
    issue.add_argument("--scope", required=True, help="scope the role is granted")
    issue.add_argument("--ttl", type=_duration, help="lifetime, such as 15m (policy default)")
    issue.add_argument("--as", dest="who", help="who asks (default: the OS user)")
    issue.add_argument("--format", choices=["text", "json"], default="text")
    issue.add_argument("--audit", help="audit store URL: record who asked for the role")
    issue.set_defaults(func=run_issue)

    revoke = verbs.add_parser("revoke", help="end a task role's sessions and drop it")
    revoke.add_argument("role")
    revoke.add_argument("--db", required=True, help="PostgreSQL URL of an administrator")
    revoke.add_argument("--audit", help="audit store URL: record who revoked the role")
    revoke.add_argument("--as", dest="who", help="who revokes (default: the OS user)")
    _add_naming(revoke)
    revoke.set_defaults(func=run_revoke)

    sweep = verbs.add_parser("sweep", help="drop expired and orphaned task roles and list them")
    sweep.add_argument("--db", required=True, help="PostgreSQL URL of an administrator")
    _add_naming(sweep)
    sweep.add_argument("--format", choices=["table", "json"], default="table")
    sweep.set_defaults(func=run_sweep)


def _add_naming(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", help="take role prefix and owner role from this policy")
    parser.add_argument("--prefix", help="task-role name prefix (default lgpd_t_)")


def _duration(text: str) -> Any:
    try:
        return check_credential_ttl(parse_duration(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _broker(args: argparse.Namespace, policy: Policy | None) -> PostgresRoleBroker:
    spec = policy.credentials if policy is not None else CredentialsSpec()
    admin = args.db
    if spec.admin_url_env and os.environ.get(spec.admin_url_env):
        admin = os.environ[spec.admin_url_env]
    return PostgresRoleBroker(
        admin,
        target_url=args.db,
        ttl=spec.ttl,
        connection_limit=spec.connection_limit,
        owner_role=spec.owner_role,
        role_prefix=getattr(args, "prefix", None) or spec.role_prefix,
    )


def _audit_store(url: str | None) -> AuditStore | None:
    if url is None:
        return None
    from lgpd_tasks.audit import AuditStore

    store = AuditStore.from_url(url)
    store.ensure_ready()  # fail before a role exists that the audit could not record
    return store


def _record(
    store: AuditStore,
    identity: TaskIdentity,
    event: str,
    role: str,
    scope: str | None = None,
    purpose: str | None = None,
    **details: Any,
) -> None:
    from lgpd_tasks.audit import NewEntry

    store.append(
        NewEntry(
            kind="credential",
            identity=identity,
            scope=scope,
            purpose=purpose,
            details={"event": event, "role": role, "asked_by": identity.principal, **details},
        )
    )


def run_issue(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    scope = policy.scope(args.scope)
    identity = TaskIdentity.for_cli(args.who)
    store = _audit_store(args.audit)
    with _broker(args, policy) as broker:
        credential = broker.issue(identity, scope, ttl=args.ttl)
    if store is not None:
        _record(
            store,
            identity,
            "issued",
            credential.role or "",
            scope.name,
            scope.purpose.name,
            expires_at=credential.expires_at.isoformat(),
        )
    if args.format == "json":
        print_json(
            {
                "url": credential.url,
                "role": credential.role,
                "expires_at": credential.expires_at.isoformat(),
                "scope": credential.scope,
                "principal": identity.principal,
            }
        )
    else:
        print(credential.url)
        print(
            f"role {credential.role} for scope {scope.name} ({identity.principal}) "
            f"expires at {credential.expires_at.isoformat()}; "
            f"revoke with: lgpd-tasks roles revoke {credential.role} --db URL",
            file=sys.stderr,
        )
    return EXIT_OK


def run_revoke(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy) if args.policy else None
    store = _audit_store(args.audit)
    with _broker(args, policy) as broker:
        dropped = broker.revoke_role(args.role)
    if store is not None:
        identity = TaskIdentity.for_cli(args.who)
        _record(store, identity, "revoked" if dropped else "already gone", args.role)
    print(f"{args.role}: {'revoked' if dropped else 'no such role (already revoked)'}")
    return EXIT_OK


def run_sweep(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy) if args.policy else None
    with _broker(args, policy) as broker:
        report = broker.sweep()
    if args.format == "json":
        print_json(report.to_dict())
    else:
        print_table(
            ["role", "reason", "expired at", "sessions ended"],
            [
                [
                    r.name,
                    r.reason,
                    r.expires_at.isoformat() if r.expires_at else "",
                    r.sessions_terminated,
                ]
                for r in report.dropped
            ],
            title=f"dropped {len(report.dropped)} task roles; {len(report.kept)} still live",
        )
        for role, why in report.skipped:
            print(f"skipped {role}: {why}", file=sys.stderr)
        for role, error in report.failed:
            print(f"failed {role}: {error}", file=sys.stderr)
    return EXIT_FAILED if report.failed else EXIT_OK
