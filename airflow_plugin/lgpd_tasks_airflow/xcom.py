"""LgpdMaskingXComBackend: XCom values are masked before they are stored, and the step audited.

Set it with ``[core] xcom_backend = lgpd_tasks_airflow.xcom.LgpdMaskingXComBackend``. In
Airflow 3 the task SDK calls ``XCom.serialize_value`` in the worker before the value is
sent to the API server and written to the ``xcom`` table, so the table, the UI and the
REST API only ever see the masked value.

What is masked: pandas DataFrames (by column name and content), lists of rows (tuples or
lists, by content), lists of records and single records (dicts, by key and content), and
strings (PII spans replaced). Numbers, booleans and ``None`` pass unchanged. Each masked
tabular value gets a masking record in the audit with its lineage edge
``airflow:<dag>.<task>`` -> ``xcom:<dag>.<task>.<key>``.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import os
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.xcom import BaseXCom

from lgpd_tasks.errors import LabelsWouldMerge, MaskingError
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker, MaskingReport

if TYPE_CHECKING:
    import pandas as pd

_SCALARS = (int, float, bool, type(None))
_OPAQUE_SAFE = (datetime.date, datetime.time, datetime.timedelta, decimal.Decimal, uuid.UUID)


@functools.lru_cache(maxsize=8)
def _masker(policy_file: str, mtime: float) -> Masker:
    from lgpd_tasks_airflow.runtime import load_task_policy, translate_errors

    policy = load_task_policy(policy_file)
    with translate_errors():
        return Masker.from_policy(policy)


def current_masker() -> Masker:
    """The masker for the configured policy (reloaded when the file changes)."""
    from lgpd_tasks_airflow.runtime import policy_path

    path = policy_path()
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = 0.0
    return _masker(path, mtime)


def mask_value(value: Any, masker: Masker) -> tuple[Any, list[MaskingReport]]:
    """``value`` with personal data masked, and a report for each table-like part of it."""
    import pandas as pd

    if isinstance(value, _SCALARS):
        return value, []
    if isinstance(value, str):
        return masker.mask_text(value), []
    if isinstance(value, pd.DataFrame):
        masked_df, report = mask_frame(value, masker)
        return masked_df, [report]
    if isinstance(value, pd.Series):
        frame, reports = mask_value(value.to_frame(), masker)
        return frame.iloc[:, 0], reports
    if isinstance(value, Mapping):
        keys = list(value)
        safe_keys = mask_labels(keys, masker)
        if all(isinstance(v, (str, *_SCALARS)) for v in value.values()):
            rows, report = masker.mask_rows(keys, [tuple(value[k] for k in keys)])
            return dict(zip(safe_keys, rows[0], strict=True)), [report]
        parts: list[MaskingReport] = []
        out: dict[Any, Any] = {}
        for key, safe_key in zip(keys, safe_keys, strict=True):
            out[safe_key], found = mask_value(value[key], masker)
            parts.extend(found)
        return out, parts
    if isinstance(value, (list, tuple)):
        return _mask_sequence(value, masker)
    if isinstance(value, _OPAQUE_SAFE):
        return value, []
    # an object we cannot see into could carry personal data to the XCom table: refuse it
    raise MaskingError(
        f"the lgpd-tasks XCom backend cannot mask a {type(value).__module__}."
        f"{type(value).__qualname__}; return a DataFrame, rows, records, text or numbers"
    )


def _merged_keys() -> MaskingError:
    return MaskingError(
        "the lgpd-tasks XCom backend cannot mask these keys or column labels without "
        "merging them: they hold personal data; return records (a list of dicts or a "
        "DataFrame with the personal value in a column) instead"
    )


def mask_labels(labels: list[Any], masker: Masker) -> list[Any]:
    """Dict keys or column labels masked by :meth:`Masker.mask_labels`, in XCom's words."""
    try:
        return masker.mask_labels(labels)
    except LabelsWouldMerge:
        raise _merged_keys() from None


def mask_frame(frame: pd.DataFrame, masker: Masker) -> tuple[pd.DataFrame, MaskingReport]:
    """A DataFrame masked in its columns, its index and its labels (:meth:`Masker.mask_frame`)."""
    try:
        return masker.mask_frame(frame)
    except LabelsWouldMerge:
        raise _merged_keys() from None


def _mask_sequence(value: list[Any] | tuple[Any, ...], masker: Masker) -> tuple[Any, list[Any]]:
    items = list(value)
    if items and all(isinstance(r, Mapping) for r in items):
        keys: list[Any] = list(dict.fromkeys(k for r in items for k in r))
        if all(isinstance(v, (str, *_SCALARS)) for r in items for v in r.values()):
            rows, report = masker.mask_rows(keys, [tuple(r.get(k) for k in keys) for r in items])
            safe = {k: masker.mask_text(k) if isinstance(k, str) else k for k in keys}
            records = [
                {safe[k]: v for k, v in zip(keys, row, strict=True) if k in r}
                for r, row in zip(items, rows, strict=True)
            ]
            if any(len(m) != len(r) for m, r in zip(records, items, strict=True)):
                raise _merged_keys()
            return records, [report]
    if (
        items
        and all(isinstance(r, (list, tuple)) for r in items)
        and len({len(r) for r in items}) == 1
        and all(isinstance(v, (str, *_SCALARS)) for r in items for v in r)
    ):
        width = len(items[0])
        names = [f"column_{i + 1}" for i in range(width)]
        rows, report = masker.mask_rows(names, [tuple(r) for r in items])
        kind = type(items[0])
        return [kind(r) for r in rows], [report]
    out: list[Any] = []
    reports: list[Any] = []
    for item in items:
        masked, found = mask_value(item, masker)
        out.append(masked)
        reports.extend(found)
    return (tuple(out) if isinstance(value, tuple) else out), reports


def _attempt() -> tuple[int, str | None]:
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
        return int(ti.try_number or 1), str(ti.id)
    except Exception:  # outside a running task there is no attempt to name
        return 1, None


def _refuse_personal_key(key: str) -> None:
    """Refuse an XCom key holding personal data: the key column is stored as it is.

    ``@task`` with ``multiple_outputs`` (inferred from a ``dict`` return annotation) pushes
    one XCom per dict key, so totals keyed by CPF would put each CPF in the key column.
    """
    from lgpd_tasks_airflow.runtime import translate_errors

    with translate_errors():
        if current_masker().mask_text(key) != key:
            raise MaskingError(
                "an XCom key holds personal data and the key is stored unmasked: key the "
                "values by something else (with @task, multiple_outputs=False keeps a dict "
                "in one XCom, whose keys are masked)"
            )


class LgpdMaskingXComBackend(BaseXCom):
    """An XCom backend that stores only masked values and audits each masking step."""

    @staticmethod
    def serialize_value(
        value: Any,
        *,
        key: str | None = None,
        task_id: str | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        map_index: int | None = None,
    ) -> str:
        if key and not key.isidentifier():
            _refuse_personal_key(key)
        if not isinstance(value, _SCALARS):
            from lgpd_tasks_airflow.runtime import audit_store, translate_errors

            with translate_errors():
                masked, reports = mask_value(value, current_masker())
            if reports:
                attempt, ti_id = _attempt()
                identity = TaskIdentity(
                    orchestrator="airflow",
                    pipeline=dag_id or "",
                    task=task_id or "",
                    run_id=run_id or "",
                    attempt=attempt,
                    map_index=map_index if map_index is not None and map_index >= 0 else None,
                    extra={"ti_id": ti_id} if ti_id else {},
                )
                report = MaskingReport.combine(reports)
                with translate_errors():
                    audit_store().record_masking(
                        identity,
                        report.to_dict(),
                        source=f"airflow:{dag_id}.{task_id}",
                        destination=f"xcom:{dag_id}.{task_id}.{key}",
                    )
            value = masked
        return BaseXCom.serialize_value(
            value, key=key, task_id=task_id, dag_id=dag_id, run_id=run_id, map_index=map_index
        )
