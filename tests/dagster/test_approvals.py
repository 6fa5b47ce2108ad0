"""The approval gate in-process: request, approve, deny, expire, relaunch by the sensor, retries."""

# No ``from __future__ import annotations``: the assets below are read by Dagster at runtime.

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest
from lgpd_tasks_dagster import GuardedDatabaseResource
from lgpd_tasks_dagster.approvals import SENSOR_NAME
from lgpd_tasks_dagster.resource import APPROVALS_PARTITIONS
from sqlalchemy import update

from lgpd_tasks.approvals import ApprovalStore, Status
from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.audit.schema import approval_requests
from lgpd_tasks.credentials.tokens import TokenKey
from tests.idp import IDP, id_token

from .conftest import EXAMPLE, Contractor, build_defs


def _old_payments(source: Path) -> int:
    with sqlite3.connect(source) as conn:
        return int(
            conn.execute("SELECT count(*) FROM payments WHERE paid_at < '2023-01-01'").fetchone()[0]
        )


def _gated_run(
    contractor: Contractor, user: str = "ana.costa"
) -> tuple[dg.ExecuteInProcessResult, str]:
    result = contractor.run("contractor_purge", tags={"lgpd/user": user})
    assert not result.success
    failure = result.failure_data_for_node("purged_old_payments")
    assert failure is not None
    assert failure.user_failure_data is not None
    request_id = str(failure.user_failure_data.metadata["request_id"].value)
    assert request_id.startswith("apr_")
    return result, request_id


def _decide(
    contractor: Contractor,
    request_id: str,
    decision: str,
    approver: str,
    reason: str = "purge agreed with finance",
) -> dg.ExecuteInProcessResult:
    return contractor.run(
        "lgpd_approve",
        run_config={
            "ops": {
                "lgpd_decide": {
                    "config": {
                        "request_id": request_id,
                        "decision": decision,
                        "reason": reason,
                        "approver_token": approver,
                    }
                }
            }
        },
    )


def _tick(contractor: Contractor, cursor: str | None = None) -> dg.SensorResult:
    sensor = contractor.defs.resolve_sensor_def(SENSOR_NAME)
    with dg.build_sensor_context(
        instance=contractor.instance,
        cursor=cursor,
        resources={"lgpd": contractor.lgpd},
        definitions=contractor.defs,
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def _launch(contractor: Contractor, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    assert request.job_name is not None
    return contractor.defs.resolve_job_def(request.job_name).execute_in_process(
        instance=contractor.instance,
        run_config=request.run_config,
        tags=request.tags,
        asset_selection=request.asset_selection,
        raise_on_error=False,
    )


def test_statement_needing_approval_fails_and_names_the_request(contractor: Contractor) -> None:
    before = _old_payments(contractor.source)
    result, request_id = _gated_run(contractor)
    failure = result.failure_data_for_node("purged_old_payments")
    assert failure is not None
    assert failure.user_failure_data is not None
    description = failure.user_failure_data.description or ""
    assert request_id in description
    assert "lgpd_approve" in description
    meta = failure.user_failure_data.metadata
    assert meta["scope"].value == "contractor.purge"
    assert meta["rule"].value
    assert _old_payments(contractor.source) == before
    assert contractor.instance.has_dynamic_partition(APPROVALS_PARTITIONS, request_id)


def test_approve_then_sensor_relaunches_and_the_purge_runs_once(contractor: Contractor) -> None:
    gated, request_id = _gated_run(contractor)
    approved = _decide(contractor, request_id, "approve", "maria.souza")
    assert approved.success

    tick = _tick(contractor)
    assert tick.run_requests is not None
    assert len(tick.run_requests) == 1
    relaunch = tick.run_requests[0]
    assert relaunch.run_key == request_id
    assert relaunch.job_name == "contractor_purge"
    assert relaunch.tags["lgpd/gated_run"] == gated.run_id

    assert _old_payments(contractor.source) > 0
    run = _launch(contractor, relaunch)
    assert run.success
    assert _old_payments(contractor.source) == 0

    store = ApprovalStore(AuditStore.from_url(contractor.audit_url))
    request = store.get(request_id)
    assert request.consumed_at is not None
    assert not request.usable
    assert request.decisions[0].approver == "maria.souza"
    assert request.decisions[0].verified is False
    again = _tick(contractor, tick.cursor)
    assert not again.run_requests


def test_the_requester_may_not_approve(contractor: Contractor) -> None:
    _, request_id = _gated_run(contractor, user="maria.souza")
    result = _decide(contractor, request_id, "approve", "maria.souza")
    assert not result.success
    failure = result.failure_data_for_node("lgpd_decide")
    assert failure is not None
    assert "cannot decide" in str(failure.user_failure_data.description)
    store = ApprovalStore(AuditStore.from_url(contractor.audit_url))
    assert store.get(request_id).status is Status.PENDING


def test_an_unknown_approver_is_refused(contractor: Contractor) -> None:
    _, request_id = _gated_run(contractor)
    result = _decide(contractor, request_id, "approve", "someone.else")
    assert not result.success
    store = ApprovalStore(AuditStore.from_url(contractor.audit_url))
    assert store.get(request_id).status is Status.PENDING


def test_deny_is_recorded_and_nothing_is_relaunched(contractor: Contractor) -> None:
    _, request_id = _gated_run(contractor)
    assert _decide(contractor, request_id, "deny", "joao.lima", "not this month").success
    tick = _tick(contractor)
    assert not tick.run_requests
    statuses = {e.partition: e.metadata["status"].value for e in tick.asset_events}
    assert statuses[request_id] == "denied"
    store = AuditStore.from_url(contractor.audit_url)
    denied = store.entries(EntryFilter(kind="approval", decision="denied"))
    assert [e.details["request_id"] for e in denied] == [request_id]
    assert _old_payments(contractor.source) > 0


def test_a_denial_needs_a_reason(contractor: Contractor) -> None:
    _, request_id = _gated_run(contractor)
    assert not _decide(contractor, request_id, "deny", "joao.lima", reason="").success


def test_expiry_never_approves(contractor: Contractor) -> None:
    _, request_id = _gated_run(contractor)
    store = AuditStore.from_url(contractor.audit_url)
    with store.engine.begin() as conn:  # the TTL has passed
        conn.execute(
            update(approval_requests)
            .where(approval_requests.c.id == request_id)
            .values(expires_at="2000-01-01T00:00:00.000000+00:00")
        )
    tick = _tick(contractor)
    assert not tick.run_requests
    statuses = {e.partition: e.metadata["status"].value for e in tick.asset_events}
    assert statuses[request_id] == "expired"
    assert store.entries(EntryFilter(kind="approval", decision="expired"))
    assert not _decide(contractor, request_id, "approve", "maria.souza").success
    assert _old_payments(contractor.source) > 0


def test_sensor_lists_pending_requests_as_partitions(contractor: Contractor) -> None:
    _, request_id = _gated_run(contractor)
    contractor.instance.delete_dynamic_partition(APPROVALS_PARTITIONS, request_id)
    tick = _tick(contractor)
    assert tick.dynamic_partitions_requests
    assert request_id in list(tick.dynamic_partitions_requests[0].partition_keys)


def test_audit_outage_retries_the_step(contractor: Contractor, tmp_path: Path) -> None:
    audit_path = tmp_path / "down" / "audit.db"
    audit_path.mkdir(parents=True)  # a directory where the database should be: sqlite fails

    @dg.asset
    def city_count(context: dg.AssetExecutionContext, lgpd: GuardedDatabaseResource) -> int:
        if context.retry_number > 0:
            audit_path.rmdir()  # the store is back for the retry
        df = lgpd.query_df("SELECT cidade FROM contractors", scope="contractor.extract")
        return int(df["cidade"].nunique())

    lgpd = GuardedDatabaseResource(
        policy_file=contractor.lgpd.policy_file,
        database_url=f"sqlite:///{contractor.source}",
        audit_url=f"sqlite:///{audit_path}",
        audit_retries=2,
        audit_retry_wait_seconds=0,
    )
    result = dg.materialize([city_count], resources={"lgpd": lgpd}, instance=contractor.instance)
    assert result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1
    entries = AuditStore.from_url(f"sqlite:///{audit_path}").entries(EntryFilter(kind="statement"))
    assert [e.attempt for e in entries] == [2]


def test_resource_needs_a_running_op(contractor: Contractor) -> None:
    with pytest.raises(Exception, match="running Dagster op or asset"):
        contractor.lgpd.query_df("SELECT cidade FROM contractors", scope="contractor.extract")


def _signed(contractor: Contractor, key: TokenKey, audit_url: str | None = None) -> Contractor:
    """The example's Definitions under a policy that trusts an identity provider's key."""
    jwks = contractor.root / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.public_jwk()]}))
    policy = contractor.root / "policy.yaml"
    policy.write_text(
        (EXAMPLE / "policy.yaml").read_text()
        + f"  oidc:\n    issuer: {IDP}\n    audience: lgpd-tasks\n    jwks: {jwks}\n"
    )
    defs = build_defs(
        policy_file=str(policy),
        database_url=f"sqlite:///{contractor.source}",
        audit_url=audit_url or contractor.audit_url,
        storage_dir=str(contractor.storage),
        report_folder=str(contractor.reports),
    )
    return replace(contractor, defs=defs)


def test_a_signed_approver_token_decides_once(contractor: Contractor) -> None:
    key = TokenKey.generate("idp-1", "ES256")
    signed = _signed(contractor, key)

    _, first = _gated_run(signed)
    token = id_token(key, "maria.souza")
    # a decision that does not happen (a mistyped request id) does not spend the token
    assert not _decide(signed, "apr_0000000000000000", "approve", token).success
    assert _decide(signed, first, "approve", token).success
    store = ApprovalStore(AuditStore.from_url(contractor.audit_url))
    (decision,) = store.get(first).decisions
    assert (decision.approver, decision.verified, decision.issuer) == ("maria.souza", True, IDP)

    # the token shows in that run's config: whoever copies it cannot decide again with it
    _, second = _gated_run(signed)
    replayed = _decide(signed, second, "approve", token)
    assert not replayed.success
    failure = replayed.failure_data_for_node("lgpd_decide")
    assert failure is not None
    assert "already used" in str(failure.user_failure_data.description)
    assert store.get(second).status is Status.PENDING

    assert _decide(signed, second, "approve", id_token(key, "maria.souza")).success
    assert store.get(second).status is Status.APPROVED


def test_a_signed_decision_is_retried_while_the_audit_store_is_down(
    contractor: Contractor, tmp_path: Path
) -> None:
    key = TokenKey.generate("idp-1", "ES256")
    _, request_id = _gated_run(_signed(contractor, key))
    down = tmp_path / "down" / "audit.db"
    down.mkdir(parents=True)  # a directory where the database should be: sqlite fails
    result = _decide(
        _signed(contractor, key, audit_url=f"sqlite:///{down}"),
        request_id,
        "approve",
        id_token(key, "maria.souza"),
    )
    assert not result.success
    events = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" in events  # like an unsigned decision, not a plain failure


def test_each_dynamically_mapped_op_asks_and_is_approved_on_its_own(
    contractor: Contractor,
) -> None:
    """Ops downstream of a dynamic output run the same statement; an approval given to one
    mapping key admits that one only."""

    @dg.op(out=dg.DynamicOut(str))
    def cutoffs():  # type: ignore[no-untyped-def]
        for year in ("2021", "2022"):
            yield dg.DynamicOutput(f"{year}-01-01", mapping_key=f"y{year}")

    @dg.op
    def purge(lgpd: GuardedDatabaseResource, cutoff: str) -> int:
        return lgpd.execute(
            "DELETE FROM payments WHERE paid_at < :cutoff",
            {"cutoff": cutoff},
            scope="contractor.purge",
        )

    @dg.job
    def mapped_purge():  # type: ignore[no-untyped-def]
        cutoffs().map(purge)

    def run() -> dg.ExecuteInProcessResult:
        return mapped_purge.execute_in_process(
            instance=contractor.instance,
            resources={"lgpd": contractor.lgpd},
            raise_on_error=False,
            tags={"lgpd/user": "ana.costa"},
        )

    assert not run().success
    store = ApprovalStore.from_url(contractor.audit_url)
    requests = {r.instance: r for r in store.list_requests(pipeline="mapped_purge")}
    assert set(requests) == {"y2021", "y2022"}
    assert requests["y2021"].fingerprint == requests["y2022"].fingerprint
    assert requests["y2021"].id != requests["y2022"].id
    assert _decide(contractor, requests["y2021"].id, "approve", "maria.souza").success
    approved = store.get(requests["y2021"].id)
    assert approved.status is Status.APPROVED
    assert approved.instance == "y2021"
    # the other mapping key's statement finds its own request, still pending
    theirs = store.find(approved.fingerprint, _identity_of(approved, "y2022"))
    assert theirs is not None
    assert theirs.id == requests["y2022"].id
    assert theirs.status is Status.PENDING
    found = store.find(approved.fingerprint, _identity_of(approved, "y2021"))
    assert found is not None
    assert found.id == approved.id


def _identity_of(request, mapping_key):  # type: ignore[no-untyped-def]
    from lgpd_tasks.identity import TaskIdentity

    return TaskIdentity(
        "dagster", request.pipeline, request.task, run_id=request.run_id, mapping_key=mapping_key
    )
