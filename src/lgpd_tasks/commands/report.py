"""``lgpd-tasks report subject|ropa``: the data-subject report and the record of processing."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from lgpd_tasks.cli import EXIT_OK, EXIT_USAGE
from lgpd_tasks.commands._common import parse_when


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="evidence for the ANPD and for data subjects",
        description="Reports built from the audit: a data subject's accesses (Art. 18/19) "
        "and the record of processing operations (Art. 37).",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    subject = verbs.add_parser(
        "subject",
        help="every task that read or changed one person's data",
        description="Read the person's identifier (CPF, e-mail...) from standard input or a "
        "hidden prompt, never from the command line; the report never shows it.",
    )
    subject.add_argument("--audit", required=True, help="audit store URL")
    subject.add_argument("--policy", help="policy file (subject keys, masking key variable)")
    subject.add_argument("--format", choices=["md", "html", "json"], default="md")
    subject.set_defaults(func=run_subject)

    ropa = verbs.add_parser(
        "ropa",
        help="the record of processing operations (Art. 37)",
        description="Per purpose: legal basis, data subjects, personal data, sources, "
        "recipients, destinations, retention, security measures applied and counts.",
    )
    ropa.add_argument("--audit", required=True, help="audit store URL")
    ropa.add_argument("--policy", required=True, help="policy file")
    ropa.add_argument("--since", type=parse_when, help="from this date or ISO time (inclusive)")
    ropa.add_argument("--until", type=parse_when, help="up to this date or ISO time (exclusive)")
    ropa.add_argument("--format", choices=["md", "html", "csv", "json"], default="md")
    ropa.set_defaults(func=run_ropa)


def read_identifier() -> str:
    """The identifier from a hidden prompt on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        return getpass.getpass("data subject identifier (not echoed): ").strip()
    return sys.stdin.readline().strip()


def run_subject(args: argparse.Namespace) -> int:
    from lgpd_tasks.audit import AuditStore
    from lgpd_tasks.evidence.reports import render_subject, subject_report
    from lgpd_tasks.policy import load_policy

    identifier = read_identifier()
    if not identifier:
        print("lgpd-tasks: no identifier given on standard input", file=sys.stderr)
        return EXIT_USAGE
    try:
        identifier.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 text, read with surrogateescape
        print("lgpd-tasks: the identifier on standard input is not UTF-8 text", file=sys.stderr)
        return EXIT_USAGE
    policy = load_policy(args.policy) if args.policy else None
    report = subject_report(AuditStore.open_existing(args.audit), identifier, policy=policy)
    del identifier
    sys.stdout.write(render_subject(report, args.format))
    return EXIT_OK


def run_ropa(args: argparse.Namespace) -> int:
    from lgpd_tasks.audit import AuditStore
    from lgpd_tasks.evidence.reports import render_ropa, ropa_report
    from lgpd_tasks.policy import load_policy

    report = ropa_report(
        AuditStore.open_existing(args.audit),
        load_policy(args.policy),
        since=args.since,
        until=args.until,
    )
    sys.stdout.write(render_ropa(report, args.format))
    return EXIT_OK
