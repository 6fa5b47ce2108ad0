"""MaskingIOManager: masks every output before the wrapped IO manager stores it, and audits it."""

# No ``from __future__ import annotations``: Dagster reads the field annotations at runtime.

import datetime as dt
import decimal
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from lgpd_tasks.errors import (
    AuditStoreUnusable,
    AuditUnavailable,
    LabelsWouldMerge,
    LgpdError,
    MaskingError,
)
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker, MaskingReport
from lgpd_tasks_dagster.errors import to_failure
from lgpd_tasks_dagster.identity import identity_from_context
from lgpd_tasks_dagster.lineage import COLUMN_SCHEMA, schema_from_frame
from lgpd_tasks_dagster.resource import GuardedDatabaseResource

_SCALARS = (int, float, bool, decimal.Decimal, dt.date, dt.datetime, dt.time, dt.timedelta)


class MaskingIOManager(dg.ConfigurableIOManagerFactory["_MaskingIOManager"]):
    """Wraps an IO manager so that what it stores holds no raw personal values.

    DataFrames are masked column by column with the policy's rules (masking is idempotent:
    values masked upstream stay as they are, so HMAC keys still join), and so are cells
    holding dicts or lists; strings are scrubbed; a list of dicts is masked as the rows of a
    frame, a dict's values under the rule their key names (nested ones too), other lists and
    tuples item by item; other numbers, dates and ``None`` pass as they are; any other object is refused rather than stored unmasked. Each stored output
    gets metadata (masked columns, strategies, cell counts) and a ``masking`` audit record.

    .. code-block:: python

        Definitions(
            assets=[...],
            resources={
                "lgpd": lgpd,
                "io_manager": MaskingIOManager(lgpd=lgpd, inner=FilesystemIOManager()),
            },
        )
    """

    lgpd: GuardedDatabaseResource = Field(
        description="The resource whose policy (masking rules, key) and audit store are used."
    )
    inner: dg.ResourceDependency[dg.IOManager] = Field(
        description="The IO manager that stores the masked values (e.g. FilesystemIOManager)."
    )
    record_unmasked: bool = Field(
        default=True,
        description="Also write a masking audit record for outputs with nothing to mask.",
    )

    def create_io_manager(self, context: dg.InitResourceContext) -> "_MaskingIOManager":
        return _MaskingIOManager(self.lgpd, self.inner, record_unmasked=self.record_unmasked)


class _MaskingIOManager(dg.IOManager):
    def __init__(
        self, lgpd: GuardedDatabaseResource, inner: dg.IOManager, *, record_unmasked: bool
    ) -> None:
        self._lgpd = lgpd
        self._inner = inner
        self._record_unmasked = record_unmasked

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        try:
            masker = self._lgpd.masker()
            masked, report = mask_value(masker, obj, where=_destination(context))
        except LgpdError as err:
            raise to_failure(err) from err
        if isinstance(masked, pd.DataFrame):
            context.add_output_metadata(
                report_metadata(report) | {COLUMN_SCHEMA: schema_from_frame(masked)}
            )
        elif report.columns:
            context.add_output_metadata(report_metadata(report))
        if report.columns or self._record_unmasked:
            self._record(context, report)
        self._inner.handle_output(context, masked)

    def load_input(self, context: dg.InputContext) -> Any:
        return self._inner.load_input(context)

    def _record(self, context: dg.OutputContext, report: MaskingReport) -> None:
        identity = _identity(context)
        scope = self._lgpd.bound_scope() if self._lgpd.scope else None
        try:
            self._lgpd.audit_store().record_masking(
                identity,
                report.to_dict(),
                source=identity.principal,
                destination=_destination(context),
                scope=scope.name if scope else None,
                purpose=scope.purpose.name if scope else None,
                legal_basis=scope.purpose.legal_basis if scope else None,
            )
        except AuditStoreUnusable as err:
            raise to_failure(err) from err  # a wrong audit_url: retrying cannot mend it
        except AuditUnavailable as err:
            context.log.warning(f"lgpd-tasks: {err}; the step will be retried")
            raise dg.RetryRequested(
                max_retries=self._lgpd.audit_retries,
                seconds_to_wait=self._lgpd.audit_retry_wait_seconds,
            ) from err


def mask_value(masker: Masker, obj: Any, *, where: str) -> tuple[Any, MaskingReport]:
    """Mask a value an op returned; refuse what cannot be masked rather than store it raw."""
    if obj is None or isinstance(obj, (str, bytes, *_SCALARS)):
        if isinstance(obj, str):
            text = masker.mask_text(obj)
            return text, _text_report(text != obj)
        if isinstance(obj, bytes):
            raise MaskingError(f"{where}: bytes cannot be masked; return a DataFrame or text")
        return obj, MaskingReport()
    if isinstance(obj, pd.DataFrame):
        return mask_frame(masker, obj, where=where)
    if isinstance(obj, pd.Series):
        frame, report = mask_frame(masker, obj.to_frame(), where=where)
        if frame.shape[1] == 0:
            return pd.Series(index=obj.index, dtype=object, name=obj.name), report
        return frame.iloc[:, 0], report
    if isinstance(obj, (list, tuple)):
        if obj and all(isinstance(item, Mapping) and _plain(item) for item in obj):
            # records: masked as the rows of a frame, each key a column
            rows, report = _records(masker, list(obj), where=where)
            return (rows if isinstance(obj, list) else tuple(rows)), report
        items = [mask_value(masker, item, where=where) for item in obj]
        values = [v for v, _ in items]
        report = MaskingReport.combine(r for _, r in items)
        return (values if isinstance(obj, list) else tuple(values)), report
    if isinstance(obj, Mapping):
        return _mask_mapping(masker, obj, where=where)
    raise MaskingError(
        f"{where}: cannot mask a {type(obj).__module__}.{type(obj).__qualname__}; "
        "return a pandas DataFrame, Series, text, numbers, or lists/dicts of those"
    )


def _plain(value: Any) -> bool:
    """Text, numbers, dates, ``None`` and lists/tuples/dicts of those: what records hold."""
    if value is None or isinstance(value, (str, *_SCALARS)):
        return True
    if isinstance(value, Mapping):
        return all(_plain(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return False


def _records(
    masker: Masker, records: list[Mapping[Any, Any]], *, where: str
) -> tuple[list[dict[Any, Any]], MaskingReport]:
    try:
        return masker.mask_records(records)
    except LabelsWouldMerge:
        raise _merged(where) from None


def _mask_mapping(
    masker: Masker, obj: Mapping[Any, Any], *, where: str
) -> tuple[dict[Any, Any], MaskingReport]:
    """A dict as one record: each value under the rule its key names (nested dicts and lists
    too), else by content; values that are frames or series are masked on their own."""
    try:
        # a key that is itself a personal value would survive, so keys are masked too
        labels = masker.mask_labels(list(obj))
    except LabelsWouldMerge:
        raise _merged(where) from None
    plain = {key: value for key, value in obj.items() if _plain(value)}
    rows, report = _records(masker, [plain], where=where) if plain else ([{}], MaskingReport())
    reports = [report]
    masked: dict[Any, Any] = {}
    for key, label in zip(obj, labels, strict=True):
        if key not in plain:
            masked[label], item_report = mask_value(masker, obj[key], where=where)
            reports.append(item_report)
        elif label in rows[0]:  # else its rule drops it
            masked[label] = rows[0][label]
    return masked, MaskingReport.combine(reports)


def mask_frame(masker: Masker, frame: pd.DataFrame, *, where: str) -> tuple[Any, MaskingReport]:
    """A DataFrame masked in its columns, its index and its labels (:meth:`Masker.mask_frame`)."""
    try:
        return masker.mask_frame(frame)
    except LabelsWouldMerge:
        raise _merged(where) from None


def _merged(where: str) -> MaskingError:
    return MaskingError(
        f"{where}: keys or column labels hold personal data that masking would merge; "
        "return records or a DataFrame with the personal value in a column instead"
    )


def _text_report(changed: bool) -> MaskingReport:
    from lgpd_tasks.masking import ColumnReport

    if not changed:
        return MaskingReport(rows=1)
    return MaskingReport(
        rows=1, columns=(ColumnReport("<text>", "text", "redact", 1, 1.0, "content"),)
    )


def report_metadata(report: MaskingReport) -> dict[str, Any]:
    """Output metadata: which columns were masked, how, and how many cells."""
    rows = [
        dg.TableRecord(
            {
                "column": c.column,
                "type": c.detected_type,
                "strategy": c.strategy,
                "cells_masked": c.cells_masked,
                "detected_by": c.detected_by,
            }
        )
        for c in report.columns
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("column", "string"),
            dg.TableColumn("type", "string"),
            dg.TableColumn("strategy", "string"),
            dg.TableColumn("cells_masked", "int"),
            dg.TableColumn("detected_by", "string"),
        ]
    )
    return {
        "lgpd/masked_columns": dg.MetadataValue.json(list(report.masked_columns)),
        "lgpd/strategies": dg.MetadataValue.json({c.column: c.strategy for c in report.columns}),
        "lgpd/cells_masked": dg.MetadataValue.int(report.cells_masked),
        "lgpd/rows": dg.MetadataValue.int(report.rows),
        "lgpd/masking": dg.MetadataValue.table(rows, schema=schema),
    }


def _destination(context: dg.OutputContext) -> str:
    if context.has_asset_key:
        return f"io_manager:{context.asset_key.to_user_string()}"
    return f"io_manager:{context.step_key}.{context.name}"


def _identity(context: dg.OutputContext) -> TaskIdentity:
    try:
        return identity_from_context(dg.OpExecutionContext.get())
    except dg.DagsterInvariantViolationError:
        # outside a step's compute (e.g. a direct call in a test): what the output knows
        task = context.asset_key.to_user_string() if context.has_asset_key else context.step_key
        return TaskIdentity(
            orchestrator="dagster",
            pipeline=context.job_name or "",
            task=task,
            run_id=context.run_id or "",
            partition=context.partition_key if context.has_partition_key else None,
        )
