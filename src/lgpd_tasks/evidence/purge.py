"""``audit purge``: drop old records, leaving a chained checkpoint so the rest still verifies."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select

from lgpd_tasks.audit import AuditStore, NewEntry
from lgpd_tasks.audit.schema import audit_log, exports, subject_access, subject_digests
from lgpd_tasks.audit.store import isotime
from lgpd_tasks.errors import EvidenceError
from lgpd_tasks.identity import TaskIdentity


@dataclass(frozen=True)
class PurgeResult:
    """What a purge removed and the checkpoint that now stands for it."""

    records: int
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    range_digest: str | None = None
    checkpoint: str | None = None


def purge_before(store: AuditStore, before: datetime, *, identity: TaskIdentity) -> PurgeResult:
    """Remove the records written before ``before`` that every export target has received.

    One transaction, holding the chain lock: the removed range must be an unbroken prefix of
    the chain (checked), every export target must hold it (else :class:`EvidenceError` and
    nothing changes), and a ``purge`` checkpoint is appended holding the range, the digest
    of its hashes and the last removed hash, which ``audit verify`` resumes from.
    """
    cutoff = isotime(before)
    with store.chain_transaction() as conn:
        first = conn.execute(select(func.min(audit_log.c.seq))).scalar()
        if first is None:
            return PurgeResult(records=0)
        newer = conn.execute(
            select(func.min(audit_log.c.seq)).where(audit_log.c.ts >= cutoff)
        ).scalar()
        head = int(conn.execute(select(func.max(audit_log.c.seq))).scalar() or 0)
        # a prefix of the chain: stop before the first record at or after the cutoff
        last = int(newer) - 1 if newer is not None else head
        if last < int(first):
            return PurgeResult(records=0)
        targets = {
            str(r[0]): int(r[1]) for r in conn.execute(select(exports.c.target, exports.c.last_seq))
        }
        if not targets:
            raise EvidenceError(
                f"refusing to purge records #{first}..#{last}: no export target has received "
                "them (run `lgpd-tasks audit export` first)"
            )
        behind = sorted((seq, t) for t, seq in targets.items() if seq < last)
        if behind:
            seq, target = behind[0]
            raise EvidenceError(
                f"refusing to purge records #{first}..#{last}: export target {target} has "
                f"received only up to #{seq} (run `lgpd-tasks audit export` to it first)"
            )
        digest = hashlib.sha256()
        expected_prev, expected_seq = store.chain_start(conn)
        last_hash = ""
        access_ids: list[bytes] = []
        rows = conn.execute(
            select(
                audit_log.c.seq,
                audit_log.c.record_id,
                audit_log.c.kind,
                audit_log.c.prev_hash,
                audit_log.c.hash,
            )
            .where(audit_log.c.seq <= last)
            .order_by(audit_log.c.seq)
        )
        count = 0
        for seq, record_id, kind, prev_hash, record_hash in rows:
            if seq != expected_seq or prev_hash != expected_prev:
                raise EvidenceError(
                    f"refusing to purge: the chain is broken at record #{seq}; "
                    "run `lgpd-tasks audit verify`"
                )
            digest.update(str(record_hash).encode() + b"\n")
            if kind == "statement":
                access_ids.append(uuid.UUID(str(record_id)).bytes)
            expected_prev, expected_seq, last_hash = (
                str(record_hash),
                int(seq) + 1,
                str(record_hash),
            )
            count += 1
        checkpoint = store.append_in(
            conn,
            [
                NewEntry(
                    kind="purge",
                    identity=identity,
                    decision="purged",
                    details={
                        "event": "purged",
                        "before": cutoff,
                        "first_seq": int(first),
                        "last_seq": last,
                        "records": count,
                        "last_hash": last_hash,
                        "range_digest": digest.hexdigest(),
                        "exported_to": sorted(targets),
                    },
                )
            ],
        )[0]
        for i in range(0, len(access_ids), 500):
            chunk = access_ids[i : i + 500]
            conn.execute(delete(subject_digests).where(subject_digests.c.access.in_(chunk)))
            conn.execute(delete(subject_access).where(subject_access.c.access.in_(chunk)))
        conn.execute(delete(audit_log).where(audit_log.c.seq <= last))
    return PurgeResult(
        records=count,
        first_seq=int(first),
        last_seq=last,
        last_hash=last_hash,
        range_digest=digest.hexdigest(),
        checkpoint=checkpoint.record_id,
    )
