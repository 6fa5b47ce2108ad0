"""``audit export``: the chain in batches (JSON Lines or Parquet) plus a manifest, resumable."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from lgpd_tasks.audit import AuditEntry, AuditStore, EntryFilter, record_hash
from lgpd_tasks.audit.schema import audit_log, exports
from lgpd_tasks.audit.store import HASHED_FIELDS, isotime, utcnow
from lgpd_tasks.errors import AuditChainBroken, ChainBreak, EvidenceError
from lgpd_tasks.evidence.objects import ObjectTarget
from lgpd_tasks.policy import Policy

ExportFormat = Literal["jsonl", "parquet"]

MANIFEST_VERSION = 1

#: The columns of an exported record: exactly what the hash covers, plus the hash. ``details``
#: is the stored canonical JSON text, so ``record_hash`` of an exported row recomputes.
EXPORT_FIELDS = (*HASHED_FIELDS, "hash")


@dataclass(frozen=True)
class ExportResult:
    """What one ``audit export`` run sent."""

    target: str
    records: int
    first_seq: int | None = None
    last_seq: int | None = None
    head: str | None = None
    manifest: str | None = None
    batches: tuple[dict[str, Any], ...] = ()
    object_lock: bool = False
    retain_until: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


def longest_retention(policy: Policy) -> timedelta | None:
    """The longest retention among the policy's purposes (the audit must outlive them all)."""
    found = [p.retention for p in policy.purposes.values()]
    return max(found) if found else None


def exported_positions(store: AuditStore) -> dict[str, int]:
    """Each export target and the last record it received."""
    store.ensure_ready()
    with store.engine.connect() as conn:
        return {
            str(r[0]): int(r[1]) for r in conn.execute(select(exports.c.target, exports.c.last_seq))
        }


def export_audit(
    store: AuditStore,
    target: ObjectTarget,
    *,
    fmt: ExportFormat = "jsonl",
    batch_records: int = 10_000,
    retain_until: datetime | None = None,
) -> ExportResult:
    """Send every record the target has not received yet; then record how far it got.

    Each batch is checked against the chain before it leaves (hashes recomputed, each
    record following the one before it, the first following the last one exported), so
    a broken chain is never exported as if it were whole.
    """
    if batch_records < 1:
        raise EvidenceError("batch size must be at least 1 record")
    store.ensure_ready()
    state = _state(store, target.url)
    if state is None:
        prev_hash, first_expected = store.chain_start()
        since = first_expected - 1
        previous: dict[str, Any] | None = None
    else:
        since, prev_hash = int(state["last_seq"]), str(state["last_hash"])
        first_expected = since + 1
        previous = {"last_seq": since, "last_hash": prev_hash, "manifest": state["manifest"]}
    with store.engine.connect() as conn:
        head_seq = conn.execute(select(func.max(audit_log.c.seq))).scalar()
    if head_seq is None or int(head_seq) <= since:
        return ExportResult(target=target.url, records=0, object_lock=target.object_lock())
    locked = target.object_lock() and retain_until is not None
    batches: list[dict[str, Any]] = []
    kinds: Counter[str] = Counter()
    expected_seq = first_expected
    first_seq: int | None = None
    while True:
        chunk = store.entries(EntryFilter(since_seq=since), limit=batch_records)
        chunk = [e for e in chunk if e.seq <= int(head_seq)]
        if not chunk:
            break
        _check(chunk, prev_hash, expected_seq)
        body = _serialise(chunk, fmt)
        key = f"batches/{chunk[0].seq:012d}-{chunk[-1].seq:012d}.{fmt}"
        stored = target.put(
            key,
            body,
            content_type="application/x-ndjson"
            if fmt == "jsonl"
            else "application/vnd.apache.parquet",
            retain_until=retain_until,
        )
        batches.append(
            {
                "key": key,
                "url": stored.url,
                "first_seq": chunk[0].seq,
                "last_seq": chunk[-1].seq,
                "records": len(chunk),
                "sha256": stored.sha256,
                "bytes": stored.size,
                "first_prev_hash": chunk[0].prev_hash,
                "last_hash": chunk[-1].hash,
                # the same digest a purge checkpoint holds for its range
                "chain_digest": range_digest(e.hash for e in chunk),
            }
        )
        kinds.update(e.kind for e in chunk)
        first_seq = chunk[0].seq if first_seq is None else first_seq
        prev_hash, since, expected_seq = chunk[-1].hash, chunk[-1].seq, chunk[-1].seq + 1
        if since >= int(head_seq):
            break
    if first_seq is None:
        return ExportResult(target=target.url, records=0, object_lock=target.object_lock())
    records = sum(int(b["records"]) for b in batches)
    manifest_key = f"manifests/{since:012d}.json"
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "store": store.url,
        "target": target.url,
        "format": fmt,
        "created_at": isotime(utcnow()),
        "range": {"first_seq": first_seq, "last_seq": since},
        "head_hash": prev_hash,
        "previous": previous,
        "counts": {
            "records": records,
            "batches": len(batches),
            "by_kind": dict(sorted(kinds.items())),
        },
        "batches": batches,
        "object_lock": {
            "mode": "COMPLIANCE" if locked else None,
            "retain_until": retain_until.isoformat() if locked and retain_until else None,
        },
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    stored_manifest = target.put(
        manifest_key, body, content_type="application/json", retain_until=retain_until
    )
    _save_state(store, target.url, since, prev_hash, stored_manifest.url)
    return ExportResult(
        target=target.url,
        records=records,
        first_seq=first_seq,
        last_seq=since,
        head=prev_hash,
        manifest=stored_manifest.url,
        batches=tuple(batches),
        object_lock=locked,
        retain_until=retain_until.isoformat() if locked and retain_until else None,
        counts=dict(kinds),
    )


def range_digest(hashes: Any) -> str:
    """sha256 over the record hashes of a range, one per line (manifests and purges agree)."""
    digest = hashlib.sha256()
    for h in hashes:
        digest.update(str(h).encode() + b"\n")
    return digest.hexdigest()


def _check(chunk: Sequence[AuditEntry], prev_hash: str, expected_seq: int) -> None:
    breaks: list[ChainBreak] = []
    for entry in chunk:
        row = entry.to_dict()
        row["details"] = entry.details_json
        if entry.seq != expected_seq:
            breaks.append(
                ChainBreak(entry.seq, entry.record_id, f"expected record #{expected_seq}")
            )
        if entry.prev_hash != prev_hash:
            breaks.append(
                ChainBreak(entry.seq, entry.record_id, "does not follow the record before it")
            )
        if record_hash(row) != entry.hash:
            breaks.append(ChainBreak(entry.seq, entry.record_id, "content does not match its hash"))
        if breaks:
            raise AuditChainBroken(breaks)
        prev_hash, expected_seq = entry.hash, entry.seq + 1


def _rows(chunk: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    rows = []
    for entry in chunk:
        row = entry.to_dict()
        row["details"] = entry.details_json
        rows.append({name: row[name] for name in EXPORT_FIELDS})
    return rows


def _serialise(chunk: Sequence[AuditEntry], fmt: ExportFormat) -> bytes:
    rows = _rows(chunk)
    if fmt == "jsonl":
        lines = [
            json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":")) for r in rows
        ]
        return ("\n".join(lines) + "\n").encode("utf-8")
    if fmt == "parquet":
        import pandas as pd

        frame = pd.DataFrame.from_records(rows, columns=list(EXPORT_FIELDS))
        for name in EXPORT_FIELDS:
            frame[name] = frame[name].astype("int64" if name in {"seq", "attempt"} else "string")
        sink = io.BytesIO()
        frame.to_parquet(sink, index=False, compression="zstd")
        return sink.getvalue()
    raise EvidenceError(f"unknown export format {fmt!r} (jsonl or parquet)")


def _state(store: AuditStore, target: str) -> dict[str, Any] | None:
    try:
        with store.engine.connect() as conn:
            row = conn.execute(select(exports).where(exports.c.target == target)).first()
    except SQLAlchemyError as err:
        raise EvidenceError(f"cannot read the export positions of {store.url}: {err}") from None
    return dict(row._mapping) if row is not None else None


def _save_state(
    store: AuditStore, target: str, last_seq: int, last_hash: str, manifest: str
) -> None:
    values = {
        "last_seq": last_seq,
        "last_hash": last_hash,
        "exported_at": isotime(utcnow()),
        "manifest": manifest,
    }
    try:
        with store.engine.begin() as conn:
            updated = conn.execute(
                exports.update().where(exports.c.target == target).values(**values)
            )
            if not updated.rowcount:
                conn.execute(exports.insert().values(target=target, **values))
    except SQLAlchemyError as err:
        raise EvidenceError(f"cannot record the export position in {store.url}: {err}") from None
