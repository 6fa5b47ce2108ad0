"""The task identity of the running Dagster op or asset, read from Dagster's execution context."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from lgpd_tasks.errors import LgpdError
from lgpd_tasks.identity import TaskIdentity

#: Run tags the approval sensor sets on a run it launches after an approval.
APPROVAL_TAG = "lgpd/approval_request"
GATED_RUN_TAG = "lgpd/gated_run"
#: A run tag naming the person who launched the run: that person may not approve its requests.
USER_TAG = "lgpd/user"


def current_context() -> dg.OpExecutionContext:
    """The running op's context (a contextvar: copy the context into threads you start)."""
    try:
        return dg.OpExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        raise LgpdError(
            "lgpd-tasks needs a running Dagster op or asset to know who is running the "
            "statement; call it from inside an op or asset (threads need "
            "contextvars.copy_context())"
        ) from None


def task_name(context: dg.OpExecutionContext) -> str:
    """The asset key for a single-asset step, else the op's name."""
    if context.has_assets_def and len(context.assets_def.keys) == 1:
        return context.asset_key.to_user_string()
    return context.op.name


def identity_from_context(context: dg.OpExecutionContext) -> TaskIdentity:
    """The TaskIdentity of this attempt: job, op or asset, run, step, partition, retry."""
    extra = {
        "step_key": context.get_step_execution_context().step.key,
        "op": context.op.name,
        "dagster_run_id": context.run_id,
    }
    return TaskIdentity(
        orchestrator="dagster",
        pipeline=context.job_name,
        task=task_name(context),
        run_id=context.run_id,
        attempt=context.retry_number + 1,
        partition=context.partition_key if context.has_partition_key else None,
        user=context.run.tags.get(USER_TAG) or None,
        extra=extra,
        mapping_key=context.get_mapping_key(),
    )


def relaunch_identity(
    identity: TaskIdentity, request_pipeline: str, request_run: str
) -> TaskIdentity:
    """The identity a relaunched run uses for the statement its approval was given for.

    The approval is bound to the gated run; the run the sensor launches after the approval
    continues that run, so its statements carry the gated run's id (and the new run's id in
    ``extra``) and find the approval.
    """
    extra = dict(identity.extra)
    extra["relaunch_of"] = request_run
    return replace(identity, pipeline=request_pipeline, run_id=request_run, extra=extra)
