"""``lgpd-tasks audit verify|tail``: check the hash chain, read the newest records."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from lgpd_tasks.cli import EXIT_FAILED, EXIT_OK
from lgpd_tasks.commands._common import print_json, print_table

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
    tail.add_argument("-n", "--limit", type=int, default=20)
    tail.add_argument("--format", choices=["table", "json"], default="table")
    tail.set_defaults(func=run_tail)


def run_verify(args: argparse.Namespace) -> int:
    from lgpd_tasks.audit import AuditStore

    result = AuditStore.from_url(args.db).verify()
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

    store = AuditStore.from_url(args.db)
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
        wrap=["what"],
    )
    return EXIT_OK


def _row(record: AuditRecord) -> list[Any]:
    entry = record.entry
    details = entry.details
    if entry.kind == "statement":
        what = str(details.get("normalized", ""))
    elif entry.kind == "approval":
        what = f"{details.get('event')} {details.get('request_id')}"
        if details.get("approver"):
            what += f" by {details['approver']}"
    elif entry.kind == "masking":
        what = f"{details.get('source')} -> {details.get('destination')}"
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
