"""What an approval admits in Dagster: its own partition and run config, before its expiry,
decided by the approvers the policy names (verified tokens, groups), and bad URLs as
configuration failures rather than retried outages."""

# No ``from __future__ import annotations``: the assets below are read by Dagster at runtime.

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pydantic
import pytest
from lgpd_tasks_dagster import GuardedDatabaseResource, build_lgpd_definitions
from lgpd_tasks_dagster.approvals import SENSOR_NAME
from lgpd_tasks_dagster.errors import ApprovalExpiredFailure, PolicyFailure
from sqlalchemy import update

from lgpd_tasks.approvals import ApprovalStore, Status
from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.audit.schema import approval_requests
from lgpd_tasks.credentials.tokens import TokenKey
from tests.idp import IDP, id_token

from .conftest import EXAMPLE, create_source

PARTITIONS = dg.StaticPartitionsDefinition(["2023-01-01", "2099-01-01"])


class PurgeConfig(dg.Config):
    cutoff: str = "2023-01-01"


@dg.asset(partitions_def=PARTITIONS)
def purge_partition(context: dg.AssetExecutionContext, lgpd: GuardedDatabaseResource) -> int:
    return lgpd.execute(
        "DELETE FROM payments WHERE paid_at < ?", [context.partition_key], scope="contractor.purge"
    )


@dg.asset
def purge_cutoff(config: PurgeConfig, lgpd: GuardedDatabaseResource) -> int:
    return lgpd.execute(
        "DELETE FROM payments WHERE paid_at < ?", [config.cutoff], scope="contractor.purge"
    )


partition_job = dg.define_asset_job("partition_job", selection=[purge_partition])
cutoff_job = dg.define_asset_job("cutoff_job", selection=[purge_cutoff])


@dataclass
class Gate:
    source: Path
    audit_url: str
    defs: dg.Definitions
    instance: dg.DagsterInstance
    lgpd: GuardedDatabaseResource

    def run(self, job: str, **kwargs: object) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, raise_on_error=False, **kwargs
        )

    def gated(self, job: str, node: str, **kwargs: object) -> tuple[str, str]:
        """Run ``job`` until its DELETE waits for approval: (gated run id, request id)."""
        result = self.run(job, tags={"lgpd/user": "ana.costa"}, **kwargs)
        failure = result.failure_data_for_node(node)
        assert failure is not None
        assert failure.user_failure_data is not None
        return result.run_id, str(failure.user_failure_data.metadata["request_id"].value)

    def decide(self, request_id: str, token: str) -> dg.ExecuteInProcessResult:
        config = {
            "request_id": request_id,
            "decision": "approve",
            "reason": "agreed",
            "approver_token": token,
        }
        return self.run("lgpd_approve", run_config={"ops": {"lgpd_decide": {"config": config}}})

    def tick(self) -> Sequence[dg.RunRequest]:
        sensor = self.defs.resolve_sensor_def(SENSOR_NAME)
        with dg.build_sensor_context(
            instance=self.instance, resources={"lgpd": self.lgpd}, definitions=self.defs
        ) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        return list(result.run_requests or [])

    def launch(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        assert request.job_name is not None
        return self.run(request.job_name, run_config=request.run_config, tags=request.tags)

    def payments(self, where: str = "1 = 1") -> int:
        with sqlite3.connect(self.source) as conn:
            return int(conn.execute(f"SELECT count(*) FROM payments WHERE {where}").fetchone()[0])

    @property
    def store(self) -> ApprovalStore:
        return ApprovalStore(AuditStore.from_url(self.audit_url))


def _policy(root: Path, approvers: str = "[maria.souza]", key: TokenKey | None = None) -> Path:
    text = (EXAMPLE / "policy.yaml").read_text()
    text = text.replace("approvers: [maria.souza]", f"approvers: {approvers}")
    if key is not None:
        jwks = root / "jwks.json"
        jwks.write_text(json.dumps({"keys": [key.public_jwk()]}))
        text += f"  oidc:\n    issuer: {IDP}\n    audience: lgpd-tasks\n    jwks: {jwks}\n"
    path = root / "policy.yaml"
    path.write_text(text)
    return path


def _gate(
    root: Path,
    instance: dg.DagsterInstance,
    policy: Path,
    approvers: Sequence[str] = (),
) -> Gate:
    source = create_source(root / "contractor.db", contractors=20)
    audit_url = f"sqlite:///{root / 'audit.db'}"
    lgpd = GuardedDatabaseResource(
        policy_file=str(policy),
        database_url=f"sqlite:///{source}",
        audit_url=audit_url,
        approvers=list(approvers),
        audit_retries=0,
        audit_retry_wait_seconds=0,
    )
    defs = build_lgpd_definitions(
        dg.Definitions(assets=[purge_partition, purge_cutoff], jobs=[partition_job, cutoff_job]),
        lgpd=lgpd,
        io_manager=dg.FilesystemIOManager(base_dir=str(root / "storage")),
    )
    return Gate(source, audit_url, defs, instance, lgpd)


@pytest.fixture
def gate(tmp_path: Path, masking_key: str, dagster_instance: dg.DagsterInstance) -> Gate:
    return _gate(tmp_path, dagster_instance, _policy(tmp_path))


# -- an approval admits the partition and run config it was given for --------------------


def test_an_approval_for_one_partition_does_not_run_another(gate: Gate) -> None:
    gated_run, request_id = gate.gated(
        "partition_job", "purge_partition", partition_key="2023-01-01"
    )
    assert gate.decide(request_id, "maria.souza").success
    before, old = gate.payments(), gate.payments("paid_at < '2023-01-01'")
    assert 0 < old < before

    # a run of another partition launched by hand with the relaunch tags copied
    forged = gate.run(
        "partition_job",
        partition_key="2099-01-01",
        tags={"lgpd/approval_request": request_id, "lgpd/gated_run": gated_run},
    )
    assert not forged.success
    assert gate.payments() == before
    assert gate.store.get(request_id).usable  # still there for its own partition
    warnings = [
        e.message
        for e in gate.instance.all_logs(forged.run_id)
        if "the approval is not used here" in (e.message or "")
    ]
    assert warnings
    assert "partition '2023-01-01'" in warnings[0]

    # the sensor's relaunch of the gated run deletes what was approved, once
    (relaunch,) = gate.tick()
    assert relaunch.tags["dagster/partition"] == "2023-01-01"
    assert gate.launch(relaunch).success
    assert gate.payments() == before - old
    assert gate.store.get(request_id).consumed_at is not None


def test_an_approval_does_not_run_another_run_config(gate: Gate) -> None:
    config = {"ops": {"purge_cutoff": {"config": {"cutoff": "2023-01-01"}}}}
    gated_run, request_id = gate.gated("cutoff_job", "purge_cutoff", run_config=config)
    assert gate.decide(request_id, "maria.souza").success
    before = gate.payments()
    wider = {"ops": {"purge_cutoff": {"config": {"cutoff": "2099-01-01"}}}}
    forged = gate.run(
        "cutoff_job",
        run_config=wider,
        tags={"lgpd/approval_request": request_id, "lgpd/gated_run": gated_run},
    )
    assert not forged.success
    assert gate.payments() == before
    assert gate.store.get(request_id).usable
    old = gate.payments("paid_at < '2023-01-01'")
    (relaunch,) = gate.tick()
    assert gate.launch(relaunch).success  # the gated run's own config: what was approved
    assert gate.payments() == before - old


# -- an approval expires --------------------------------------------------------------------


def test_an_approval_not_used_before_its_expiry_expires(gate: Gate) -> None:
    _, request_id = gate.gated("partition_job", "purge_partition", partition_key="2023-01-01")
    assert gate.decide(request_id, "maria.souza").success
    (relaunch,) = gate.tick()  # computed now, launched after the expiry below
    with AuditStore.from_url(gate.audit_url).engine.begin() as conn:
        conn.execute(
            update(approval_requests)
            .where(approval_requests.c.id == request_id)
            .values(expires_at="2020-01-02T00:00:00.000000+00:00")
        )
    before = gate.payments()
    assert gate.tick() == []  # the sensor no longer relaunches it
    late = gate.launch(relaunch)
    assert not late.success
    failure = late.failure_data_for_node("purge_partition")
    assert failure is not None
    assert failure.error is not None
    assert failure.error.cls_name == ApprovalExpiredFailure.__name__
    assert gate.payments() == before
    assert gate.store.get(request_id).status is Status.EXPIRED
    expired = AuditStore.from_url(gate.audit_url).entries(
        EntryFilter(kind="approval", decision="expired")
    )
    assert [e.details["was"] for e in expired] == ["approved"]


# -- who may approve ------------------------------------------------------------------------


def test_with_oidc_a_name_is_refused_and_the_subject_must_be_an_approver(
    tmp_path: Path, masking_key: str, dagster_instance: dg.DagsterInstance
) -> None:
    key = TokenKey.generate("idp-1", "ES256")
    gate = _gate(tmp_path, dagster_instance, _policy(tmp_path, key=key))
    _, request_id = gate.gated("partition_job", "purge_partition", partition_key="2023-01-01")

    named = gate.decide(request_id, "maria.souza")
    assert not named.success
    failure = named.failure_data_for_node("lgpd_decide")
    assert failure is not None
    assert "must be the approver's OIDC ID token" in str(failure.user_failure_data.description)

    intruder = gate.decide(request_id, id_token(key, "intruder", groups=()))
    assert not intruder.success
    failure = intruder.failure_data_for_node("lgpd_decide")
    assert failure is not None
    assert "not among the policy's approvers" in str(failure.user_failure_data.description)
    assert gate.store.get(request_id).status is Status.PENDING

    assert gate.decide(request_id, id_token(key, "maria.souza", groups=())).success
    (decision,) = gate.store.get(request_id).decisions
    assert (decision.approver, decision.verified, decision.issuer) == ("maria.souza", True, IDP)


def test_the_resource_approvers_also_bind_verified_tokens(
    tmp_path: Path, masking_key: str, dagster_instance: dg.DagsterInstance
) -> None:
    key = TokenKey.generate("idp-1", "ES256")
    policy = _policy(tmp_path, approvers="[]", key=key)
    gate = _gate(tmp_path, dagster_instance, policy, approvers=["joao.lima"])
    _, request_id = gate.gated("partition_job", "purge_partition", partition_key="2023-01-01")
    assert not gate.decide(request_id, id_token(key, "intruder", groups=())).success
    assert gate.decide(request_id, id_token(key, "joao.lima", groups=())).success


def test_a_group_entry_is_not_an_approver_name(
    tmp_path: Path, masking_key: str, dagster_instance: dg.DagsterInstance
) -> None:
    gate = _gate(tmp_path, dagster_instance, _policy(tmp_path, approvers='["group:dpo"]'))
    _, request_id = gate.gated("partition_job", "purge_partition", partition_key="2023-01-01")
    result = gate.decide(request_id, "group:dpo")
    assert not result.success
    assert gate.store.get(request_id).status is Status.PENDING


def test_a_group_entry_admits_a_verified_member(
    tmp_path: Path, masking_key: str, dagster_instance: dg.DagsterInstance
) -> None:
    key = TokenKey.generate("idp-1", "ES256")
    policy = _policy(tmp_path, approvers='["group:dpo"]', key=key)
    gate = _gate(tmp_path, dagster_instance, policy)
    _, request_id = gate.gated("partition_job", "purge_partition", partition_key="2023-01-01")
    assert not gate.decide(request_id, id_token(key, "group:dpo", groups=())).success
    assert not gate.decide(request_id, id_token(key, "bruno", groups=("finance",))).success
    assert gate.decide(request_id, id_token(key, "carla", groups=("dpo",))).success
    assert gate.store.get(request_id).status is Status.APPROVED


# -- a URL that cannot be used is a configuration failure, not an outage ------------------


def _with(lgpd: GuardedDatabaseResource, **changes: object) -> GuardedDatabaseResource:
    fields = {
        "policy_file": lgpd.policy_file,
        "database_url": lgpd.database_url,
        "audit_url": lgpd.audit_url,
        "audit_retry_wait_seconds": 0,
    }
    return GuardedDatabaseResource(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url", ["postgresql://u:s3cr3tPW@host:port/db", "mysql://u:s3cr3tPW@localhost/db"]
)
@pytest.mark.parametrize("which", ["database_url", "audit_url"])
def test_an_unusable_url_fails_the_step_without_retries(gate: Gate, url: str, which: str) -> None:
    @dg.asset
    def cities(lgpd: GuardedDatabaseResource) -> int:
        return len(lgpd.query_df("SELECT cidade FROM contractors", scope="contractor.extract"))

    lgpd = _with(gate.lgpd, **{which: url, "audit_retries": 3})
    result = dg.materialize(
        [cities], resources={"lgpd": lgpd}, instance=gate.instance, raise_on_error=False
    )
    assert not result.success
    events = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in events
    failure = result.failure_data_for_node("cities")
    assert failure is not None
    assert failure.error is not None
    assert failure.error.cls_name == PolicyFailure.__name__
    assert failure.user_failure_data is not None
    description = str(failure.user_failure_data.description)
    assert "s3cr3tPW" not in description
    assert ("port must be a number" in description) or ("unsupported database" in description)


def test_an_unusable_audit_url_fails_the_decision_without_retries(gate: Gate) -> None:
    _, request_id = gate.gated("partition_job", "purge_partition", partition_key="2023-01-01")
    lgpd = _with(gate.lgpd, audit_url="postgresql://u:s3cr3tPW@host:port/db", audit_retries=3)
    defs = build_lgpd_definitions(lgpd=lgpd)
    config = {"request_id": request_id, "decision": "approve", "approver_token": "maria.souza"}
    result = defs.resolve_job_def("lgpd_approve").execute_in_process(
        instance=gate.instance,
        raise_on_error=False,
        run_config={"ops": {"lgpd_decide": {"config": config}}},
    )
    assert not result.success
    assert "STEP_UP_FOR_RETRY" not in [e.event_type_value for e in result.all_events]
    failure = result.failure_data_for_node("lgpd_decide")
    assert failure is not None
    assert failure.error is not None
    assert failure.error.cls_name == PolicyFailure.__name__


def test_audit_retries_must_not_be_negative() -> None:
    with pytest.raises(pydantic.ValidationError, match="audit_retries"):
        GuardedDatabaseResource(
            database_url="sqlite:///x.db", audit_url="sqlite:///a.db", audit_retries=-1
        )
