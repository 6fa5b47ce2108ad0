"""``write_report``: a pipeline's last step writes its masked result to a bucket, on the record."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from lgpd_tasks.audit import AuditStore
from lgpd_tasks.errors import EvidenceError
from lgpd_tasks.evidence.objects import StoredObject, open_target
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker
from lgpd_tasks.policy import Policy, Scope, load_policy

if TYPE_CHECKING:
    import pandas as pd

_CONTENT_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".csv": "text/csv",
    ".jsonl": "application/x-ndjson",
}


def write_report(
    df: pd.DataFrame,
    destination_url: str,
    *,
    identity: TaskIdentity,
    audit: AuditStore | str,
    policy: Policy | str | None = None,
    scope: Scope | str | None = None,
    masker: Masker | None = None,
    endpoint_url: str | None = None,
    retain_until: datetime | None = None,
) -> StoredObject:
    """Mask ``df``, write it to ``destination_url`` and record the destination in the audit.

    ``destination_url`` is ``s3://bucket/path/report.parquet`` or ``file:///folder/report.csv``
    (``.parquet``, ``.csv`` or ``.jsonl``). The audit gets a masking record whose lineage
    edge runs from the task to the object, which the reports follow. No orchestrator needed:
    Airflow and Dagster steps call it the same way.
    """
    loaded = load_policy(policy) if isinstance(policy, str) else policy
    if masker is None:
        if loaded is None:
            raise EvidenceError("write_report needs a policy or a masker to mask the report")
        masker = Masker.from_policy(loaded)
    bound = scope
    if isinstance(scope, str):
        if loaded is None:
            raise EvidenceError(f"scope {scope!r} given without a policy")
        bound = loaded.scope(scope)
    store = audit if isinstance(audit, AuditStore) else AuditStore.from_url(audit)
    parsed = urlparse(destination_url)
    path = PurePosixPath(parsed.path)
    suffix = path.suffix.lower()
    if suffix not in _CONTENT_TYPES or not path.name:
        raise EvidenceError(
            f"{destination_url!r}: name the object with .parquet, .csv or .jsonl at the end"
        )
    folder = destination_url[: -len(path.name)].rstrip("/")
    # the labels too: a pivot by e-mail or CPF has personal data in its column names (two
    # labels that would merge once masked are refused, LabelsWouldMerge); the index is not
    # written
    masked, report = masker.mask_dataframe(df)
    masked = masker.mask_frame_labels(masked)
    target = open_target(folder, endpoint_url=endpoint_url)
    stored = target.put(
        path.name,
        _serialise(masked, suffix),
        content_type=_CONTENT_TYPES[suffix],
        retain_until=retain_until,
    )
    store.record_masking(
        identity,
        report.to_dict(),
        source=identity.principal,
        destination=stored.url,
        scope=bound.name if isinstance(bound, Scope) else None,
        purpose=bound.purpose.name if isinstance(bound, Scope) else None,
        legal_basis=bound.purpose.legal_basis if isinstance(bound, Scope) else None,
    )
    return stored


def _serialise(df: pd.DataFrame, suffix: str) -> bytes:
    if suffix == ".parquet":
        sink = io.BytesIO()
        df.to_parquet(sink, index=False)
        return sink.getvalue()
    if suffix == ".csv":
        return df.to_csv(index=False).encode("utf-8")
    return df.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8")
