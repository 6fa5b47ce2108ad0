"""The approval gate in the Dagster UI: pending requests as partitions, the approve job, the relaunch sensor."""

# No ``from __future__ import annotations`` here: Dagster reads the op's annotations at runtime.

import json
from collections.abc import Sequence
from enum import Enum
from typing import Any

import dagster as dg
from pydantic import Field

from lgpd_tasks.approvals import ApprovalRequest, Approver, Status
from lgpd_tasks.approvals.identity import resolve_approver as verify_approver
from lgpd_tasks.approvals.identity import used_token_key
from lgpd_tasks.approvals.store import GROUP_PREFIX
from lgpd_tasks.credentials.tokens import ReplayCache, SqlReplayCache
from lgpd_tasks.errors import (
    ApprovalError,
    AuditStoreUnusable,
    AuditUnavailable,
    LgpdError,
    ReplayCacheUnavailable,
)
from lgpd_tasks_dagster.errors import APPROVE_JOB, DECIDE_OP, ApprovalDecisionFailure, to_failure
from lgpd_tasks_dagster.identity import APPROVAL_TAG, GATED_RUN_TAG
from lgpd_tasks_dagster.resource import (
    APPROVALS_ASSET,
    APPROVALS_PARTITIONS,
    RELAUNCH_PARTITION_TAGS,
    GuardedDatabaseResource,
    request_metadata,
)

SENSOR_NAME = "lgpd_approval_sensor"
RELAUNCH_ASSETS_JOB = "lgpd_relaunch_assets"
#: The issuer recorded for approvers named in the configured list (no signed token).
CONFIGURED_LIST_ISSUER = "dagster:configured-approvers"
#: The table, in the audit store's database, that remembers approver tokens already used.
USED_TOKENS_TABLE = "lgpd_used_approver_tokens"

approval_requests_partitions = dg.DynamicPartitionsDefinition(name=APPROVALS_PARTITIONS)

lgpd_approvals = dg.AssetSpec(
    key=APPROVALS_ASSET,
    description=(
        "Approval requests of lgpd-tasks, one partition per request. Observations carry the "
        "status (pending, approved, denied, expired), the normalised statement (no literal "
        f"values) and who asked. Decide with the {APPROVE_JOB!r} job."
    ),
    partitions_def=approval_requests_partitions,
    group_name="lgpd",
    kinds={"lgpd"},
)


class ApprovalDecision(Enum):
    approve = "approve"
    deny = "deny"


class ApprovalDecisionConfig(dg.Config):
    """What the approver types in the Launchpad."""

    request_id: str = Field(description="The approval request id, apr_... (in the failed run).")
    decision: ApprovalDecision = Field(description="approve or deny.")
    reason: str = Field(default="", description="Why; required to deny.")
    approver_token: str = Field(
        description=(
            "Who approves: with the policy's approvals.oidc, the approver's OIDC ID token "
            "(a name is refused); without it, the approver's name from the resource's "
            "'approvers' or the policy's approvals.approvers (recorded as unverified)."
        )
    )


def resolve_approver(
    lgpd: GuardedDatabaseResource, token: str, used: ReplayCache | None = None
) -> Approver:
    """The approver a Launchpad token names.

    A signed OIDC ID token is verified against the policy's ``approvals.oidc`` issuer and
    recorded as verified; with ``approvals.oidc`` set, only a token is accepted, never a
    name. The Launchpad's run config shows it to everyone who can see the run, so with
    ``used`` (the decide op passes a cache in the audit store's database, which keeps a
    digest of the token) it decides once only. Without ``approvals.oidc`` (open-source
    Dagster has no user identity) the token is checked against the configured approver
    names (resource ``approvers`` and the policy's ``approvals.approvers``; a ``group:``
    entry is never a name) and the decision is recorded as unverified; a policy that
    requires verified identities refuses.
    """
    policy = lgpd.load_policy()
    name = token.strip()
    if policy.approvals.oidc is not None:
        if name.count(".") != 2:
            raise ApprovalError(
                "the policy's approvals.oidc is set: approver_token must be the approver's "
                "OIDC ID token; a name is not accepted"
            )
        # a signed OIDC ID token: the identity provider's verified subject decides
        return verify_approver(policy.approvals, token=name, single_use=used)
    allowed = {
        a for a in (*lgpd.approvers, *policy.approvals.approvers) if not a.startswith(GROUP_PREFIX)
    }
    if policy.approvals.require_verified_identity:
        raise ApprovalError(
            "the policy requires verified approver identities (approvals."
            "require_verified_identity) and this deployment has no approver-token issuer"
        )
    if not name or name.startswith(GROUP_PREFIX) or name not in allowed:
        raise ApprovalError(
            "the approver token does not name a configured approver "
            "(the resource's 'approvers' or the policy's approvals.approvers)"
        )
    return Approver(name=name, verified=False, issuer=CONFIGURED_LIST_ISSUER)


@dg.op(name=DECIDE_OP, description="Approve or deny an lgpd-tasks approval request.")
def lgpd_decide(
    context: dg.OpExecutionContext, config: ApprovalDecisionConfig, lgpd: GuardedDatabaseResource
) -> None:
    used = SqlReplayCache(lgpd.audit_url, table=USED_TOKENS_TABLE)
    try:
        approver = resolve_approver(lgpd, config.approver_token, used)
        try:
            store = lgpd.approval_store()
            if config.decision is ApprovalDecision.approve:
                request = store.approve(config.request_id, approver, config.reason)
            else:
                request = store.deny(config.request_id, approver, config.reason)
        except BaseException:
            _give_back(used, config.approver_token, context)
            raise
    except AuditStoreUnusable as err:
        raise to_failure(err) from err  # a wrong audit_url: retrying cannot mend it
    except (AuditUnavailable, ReplayCacheUnavailable) as err:
        # the audit store's database (which also keeps used approver tokens) is down
        raise dg.RetryRequested(max_retries=lgpd.audit_retries) from err
    except LgpdError as err:
        failure = to_failure(err)
        raise ApprovalDecisionFailure(
            f"cannot {config.decision.value} {config.request_id}: {err}",
            error=err,
            metadata=dict(failure.metadata) | {"request_id": config.request_id},
        ) from err
    finally:
        used.close()
    metadata = request_metadata(request.to_dict()) | {
        "approver": approver.name,
        "verified": approver.verified,
        "decision": config.decision.value,
    }
    _ensure_partition(context.instance, request.id)
    context.log_event(
        dg.AssetObservation(asset_key=APPROVALS_ASSET, partition=request.id, metadata=metadata)
    )
    trust = "verified" if approver.verified else "unverified"
    context.log.info(f"{request.id} is now {request.status} ({approver.name}, {trust})")


@dg.job(
    name=APPROVE_JOB,
    description=(
        "Approve or deny an lgpd-tasks approval request from the Launchpad: "
        "request_id, decision (approve|deny), reason, approver_token."
    ),
    tags={"lgpd/kind": "approval"},
)
def lgpd_approve_job() -> None:
    lgpd_decide()


def _give_back(used: ReplayCache, token: str, context: dg.OpExecutionContext) -> None:
    """Nothing was decided (the store was down, the request id was wrong): the approver's
    token may decide again, on a retry or with the right request id."""
    try:
        used.forget(used_token_key(token.strip()))
    except LgpdError as err:
        context.log.warning(f"lgpd-tasks: the approver token stays spent: {err}")


def _ensure_partition(instance: dg.DagsterInstance, request_id: str) -> None:
    if not instance.has_dynamic_partition(APPROVALS_PARTITIONS, request_id):
        instance.add_dynamic_partitions(APPROVALS_PARTITIONS, [request_id])


def relaunch_request(
    request: ApprovalRequest,
    run: dg.DagsterRun,
    known_jobs: Sequence[str],
) -> dg.RunRequest | None:
    """The run that continues a gated run after its approval (run key = request id)."""
    if run.job_name in known_jobs:
        job_name = run.job_name
    elif RELAUNCH_ASSETS_JOB in known_jobs and run.asset_selection:
        job_name = RELAUNCH_ASSETS_JOB  # ad-hoc asset materializations have no job to name
    else:
        return None
    tags = {
        k: v
        for k, v in run.tags.items()
        if not k.startswith("dagster/") or k in RELAUNCH_PARTITION_TAGS
    }
    tags |= {APPROVAL_TAG: request.id, GATED_RUN_TAG: request.run_id}
    return dg.RunRequest(
        run_key=request.id,
        job_name=job_name,
        run_config=run.run_config,
        tags=tags,
        asset_selection=list(run.asset_selection) if run.asset_selection else None,
    )


def evaluate_approvals(
    context: dg.SensorEvaluationContext,
    lgpd: GuardedDatabaseResource,
    known_jobs: Sequence[str],
) -> dg.SensorResult:
    """One sensor tick: expire due requests, list pending ones, relaunch approved runs."""
    store = lgpd.approval_store()
    store.expire_due()  # recorded in the audit; a timeout never approves
    instance = context.instance
    known = set(instance.get_dynamic_partitions(APPROVALS_PARTITIONS))
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    runs: list[dg.RunRequest] = []
    events: list[dg.AssetObservation] = []
    new_partitions: list[str] = []
    skipped: list[str] = []
    for request in store.list_requests(limit=500):
        status = str(request.status)
        if request.id not in known:
            new_partitions.append(request.id)
        if seen.get(request.id) != status or (status == "approved" and request.usable):
            if seen.get(request.id) != status:
                events.append(
                    dg.AssetObservation(
                        asset_key=APPROVALS_ASSET,
                        partition=request.id,
                        metadata=request_metadata(request.to_dict()),
                    )
                )
            seen[request.id] = status
        if request.status is not Status.APPROVED or not request.usable:
            continue
        run = instance.get_run_by_id(request.run_id)
        if run is None:
            continue  # not a Dagster run of this instance (an Airflow task, the CLI...)
        relaunch = relaunch_request(request, run, known_jobs)
        if relaunch is None:
            skipped.append(f"{request.id}: job {run.job_name!r} is not targeted by the sensor")
            continue
        runs.append(relaunch)
    for line in skipped:
        context.log.warning(line)
    return dg.SensorResult(
        run_requests=runs,
        cursor=json.dumps(seen, sort_keys=True),
        dynamic_partitions_requests=(
            [approval_requests_partitions.build_add_request(new_partitions)]
            if new_partitions
            else None
        ),
        asset_events=events,
        skip_reason=None if runs else "no approved request waits for its run",
    )


def build_approval_sensor(
    jobs: Sequence[Any],
    *,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    name: str = SENSOR_NAME,
) -> dg.SensorDefinition:
    """``lgpd_approval_sensor``: relaunches the gated jobs among ``jobs`` once approved."""
    job_names = [j.name for j in jobs]

    @dg.sensor(
        name=name,
        jobs=list(jobs) or None,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Lists lgpd-tasks approval requests as partitions of lgpd_approvals, records "
            "expiries, and relaunches a gated run once its request is approved "
            "(run key = request id)."
        ),
    )
    def lgpd_approval_sensor(
        context: dg.SensorEvaluationContext, lgpd: GuardedDatabaseResource
    ) -> dg.SensorResult:
        return evaluate_approvals(context, lgpd, job_names)

    return lgpd_approval_sensor


__all__ = [
    "ApprovalDecision",
    "ApprovalDecisionConfig",
    "build_approval_sensor",
    "evaluate_approvals",
    "lgpd_approvals",
    "lgpd_approve_job",
    "lgpd_decide",
    "resolve_approver",
]
