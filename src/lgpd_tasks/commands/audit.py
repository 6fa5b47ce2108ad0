"""``lgpd-tasks audit verify|tail|export|purge``: check, read, export and purge the audit."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from lgpd_tasks.cli import EXIT_FAILED, EXIT_OK
from lgpd_tasks.commands._common import (
    count_argument,
    duration_argument,
    parse_when,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from lgpd_tasks.audit import AuditRecord


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit", help="verify and read the audit", description="Verify and read the audit."
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    verify = verbs.add_parser(
        "verify",
        help="recompute the hash chain",
        description="Recompute the hash chain; exit 1 naming the first altered, removed or "
        "reordered record.",
    )
    verify.add_argument("--db", required=True, help="audit store URL")
    verify.add_argument("--format", choices=["text", "json"], default="text")
    verify.set_defaults(func=run_verify)

    tail = verbs.add_parser("tail", help="the newest records, one line per statement")
    tail.add_argument("--db", required=True, help="audit store URL")
    tail.add_argument("--pipeline", help="DAG id or job name")
    tail.add_argument("--task", help="task id, op or asset")
    tail.add_argument("--run", help="run id")
    tail.add_argument("--decision", help="allow, approved, block, approve, ...")
    tail.add_argument("--kind", help="statement, masking, approval, ...")
    tail.add_argument("-n", "--limit", type=count_argument(), default=20)
    tail.add_argument("--format", choices=["table", "json"], default="table")
    tail.set_defaults(func=run_tail)

    export = verbs.add_parser(
        "export",
        help="send new records to object storage",
        description="Send the records a target has not received yet, in batches with a "
        "manifest (chain head hash, range, counts, sha256 of each batch). S3 buckets with "
        "Object Lock get COMPLIANCE retention.",
    )
    export.add_argument("--db", required=True, help="audit store URL")
    export.add_argument("--to", required=True, help="s3://BUCKET/PREFIX or file:///folder")
    export.add_argument("--endpoint-url", help="S3 endpoint (MinIO, moto, another region)")
    export.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    export.add_argument(
        "--batch-records", type=count_argument(), default=10_000, help="records per batch"
    )
    retain = export.add_mutually_exclusive_group()
    retain.add_argument(
        "--policy", help="policy file: retain until now + the longest purpose retention"
    )
    retain.add_argument(
        "--retain-until", type=parse_when, help="retain-until date (YYYY-MM-DD or ISO time)"
    )
    retain.add_argument(
        "--retention", type=duration_argument, help="retain for a duration from now (180d, 5y)"
    )
    export.set_defaults(func=run_export)

    purge = verbs.add_parser(
        "purge",
        help="remove old records, keeping the chain verifiable",
        description="Remove records written before DATE that every export target has "
        "received, leaving a checkpoint record so `audit verify` still passes.",
    )
    purge.add_argument("--db", required=True, help="audit store URL")
    purge.add_argument(
        "--before", required=True, type=parse_when, help="YYYY-MM-DD or ISO time (UTC if naive)"
    )
    purge.add_argument("--as", dest="who", help="who runs the purge (default: the OS user)")
    purge.set_defaults(func=run_purge)


def run_verify(args: argparse.Namespace) -> int:
    from lgpd_tasks.audit import AuditStore

    result = AuditStore.open_existing(args.db).verify()
    if args.format == "json":
        print_json(
            {
                "ok": result.ok,
                "records": result.records,
                "head": result.head,
                "breaks": [b.__dict__ for b in result.breaks],
            }
        )
    elif result.ok:
        print(f"audit chain OK: {result.records} records, head {result.head[:16]}")
    else:
        first = result.breaks[0]
        print(
            f"audit chain BROKEN at record #{first.seq} ({first.record_id}): {first.problem}",
            file=sys.stderr,
        )
        for more in result.breaks[1:5]:
            print(f"  also #{more.seq}: {more.problem}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def run_tail(args: argparse.Namespace) -> int:
    from lgpd_tasks.audit import AuditStore, EntryFilter, redact_url

    store = AuditStore.open_existing(args.db)
    where = EntryFilter(
        pipeline=args.pipeline,
        task=args.task,
        run_id=args.run,
        decision=args.decision,
        kind=args.kind,
    )
    records = store.records(where, limit=args.limit)
    if args.format == "json":
        print_json([r.to_dict() for r in records])
        return EXIT_OK
    rows = [_row(r) for r in records]
    print_table(
        ["#", "time", "who", "scope", "kind", "decision", "status", "rows", "what"],
        rows,
        title=f"audit {redact_url(args.db)}",
        wrap=["who", "what"],
    )
    return EXIT_OK


def _row(record: AuditRecord) -> list[Any]:
    from lgpd_tasks.audit import scrub_text

    entry = record.entry
    details = entry.details
    if entry.kind == "statement":
        what = str(details.get("normalized", ""))
    elif entry.kind == "approval":
        what = f"{details.get('event')} {details.get('request_id')}"
        if details.get("approver"):
            what += f" by {details['approver']}"
    elif entry.kind == "masking":
        what = scrub_text(f"{details.get('source')} -> {details.get('destination')}")
    else:
        what = str(details.get("event", ""))
    return [
        entry.seq,
        entry.ts[:19].replace("T", " "),
        entry.principal,
        entry.scope or "",
        entry.kind,
        entry.decision or "",
        record.status,
        "" if record.rows is None else record.rows,
        what[:120],
    ]


def run_export(args: argparse.Namespace) -> int:
    from lgpd_tasks.audit import AuditStore
    from lgpd_tasks.audit.store import utcnow
    from lgpd_tasks.evidence.export import export_audit, longest_retention
    from lgpd_tasks.evidence.objects import open_target
    from lgpd_tasks.policy import load_policy

    retain_until = None
    if args.retain_until:
        retain_until = args.retain_until
    elif args.retention:
        retain_until = utcnow() + args.retention
    elif args.policy:
        longest = longest_retention(load_policy(args.policy))
        retain_until = utcnow() + longest if longest is not None else None
    target = open_target(args.to, endpoint_url=args.endpoint_url)
    store = AuditStore.open_existing(args.db)
    result = export_audit(
        store, target, fmt=args.format, batch_records=args.batch_records, retain_until=retain_until
    )
    if result.records == 0:
        print(f"nothing new to export to {result.target}")
        return EXIT_OK
    lock = (
        f", Object Lock COMPLIANCE until {result.retain_until}"
        if result.object_lock
        else ", no Object Lock"
    )
    print(
        f"exported records #{result.first_seq}..#{result.last_seq} ({result.records} in "
        f"{len(result.batches)} batches{lock}) to {result.target}; manifest {result.manifest}"
    )
    return EXIT_OK


def run_purge(args: argparse.Namespace) -> int:
    from lgpd_tasks.audit import AuditStore
    from lgpd_tasks.evidence.purge import purge_before
    from lgpd_tasks.identity import TaskIdentity

    store = AuditStore.open_existing(args.db)
    result = purge_before(store, args.before, identity=TaskIdentity.for_cli(args.who))
    if result.records == 0:
        print("nothing to purge")
    else:
        print(
            f"purged records #{result.first_seq}..#{result.last_seq} ({result.records}); "
            f"checkpoint {result.checkpoint} holds range digest {result.range_digest[:16]}"
            if result.range_digest
            else f"purged {result.records} records"
        )
    return EXIT_OK
