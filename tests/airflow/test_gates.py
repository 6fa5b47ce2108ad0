"""Approval gates in real DAG runs: approved, denied, expired, timed out; reschedule and deferred."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk import DAG
from lgpd_tasks_airflow import LgpdApprovalSensor, LgpdSqlOperator, gated_sql

from lgpd_tasks.approvals import Approver, Status
from lgpd_tasks.errors import ApprovalError

pytestmark = pytest.mark.slow

START = datetime(2024, 1, 1)
PURGE = "DELETE FROM staging_orders WHERE created_at < '2023-06-01'"
OLD_ROWS = 6  # staging rows created before 2023-06 (see conftest.make_source)


def _logs(capfd: pytest.CaptureFixture[str]) -> str:
    out = capfd.readouterr()
    return out.out + out.err


def _purge_dag(env, **gate):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        gated_sql("purge", PURGE, "crm.purge", conn_id="crm", poke_interval=1, **gate)
    return dag


@pytest.mark.parametrize("deferrable", [False, True], ids=["reschedule", "deferrable"])
def test_approved_gate_runs_the_statement_once(env, capfd, deferrable):
    dag = _purge_dag(env, deferrable=deferrable)
    assert dag.get_task("purge_approval").mode == "reschedule"
    with env.approver("approve", "janela de manutenção") as decided:
        run = env.run(dag)
    assert env.states(run) == {
        "purge_approval": ("success", 1),
        "purge": ("success", 1),
    }
    assert env.staging_rows() == 10 - OLD_ROWS
    (request_id,) = decided
    request = env.approvals().get(request_id)
    assert (request.pipeline, request.task, request.run_id) == (env.dag_id, "purge", run.run_id)
    assert request.status is Status.APPROVED
    assert request.consumed_by == f"airflow:{env.dag_id}.purge"
    assert "2023-06-01" not in request.normalized
    (record,) = [r for r in env.audit().records() if r.entry.kind == "statement"]
    assert (record.entry.decision, record.entry.details["approval_id"]) == ("approved", request_id)
    assert record.rows == OLD_ROWS
    if deferrable:
        assert "Deferring until request" in _logs(capfd)


@pytest.mark.parametrize("deferrable", [False, True], ids=["reschedule", "deferrable"])
def test_denied_gate_fails_without_retry_and_says_why(env, capfd, deferrable):
    dag = _purge_dag(env, deferrable=deferrable, sensor_kwargs={"retries": 2})
    with env.approver("deny", "sem ticket de mudança") as decided:
        run = env.run(dag)
    assert env.states(run) == {
        "purge_approval": ("failed", 1),
        "purge": ("upstream_failed", 0),
    }
    assert env.staging_rows() == 10
    logs = _logs(capfd)
    assert f"approval request {decided[0]} for task purge was denied by ana.aprovadora" in logs
    assert "sem ticket de mudança" in logs


def test_expired_request_fails_the_gate(env, capfd, tmp_path, monkeypatch):
    policy = tmp_path / "policy.yaml"
    policy.write_text((env.policy_file.read_text()).replace("ttl: 1h", "ttl: 2s"), encoding="utf-8")
    monkeypatch.setenv("LGPD_POLICY_FILE", str(policy))
    run = env.run(_purge_dag(env))
    assert env.states(run) == {
        "purge_approval": ("failed", 1),
        "purge": ("upstream_failed", 0),
    }
    assert "without a decision (a timeout never approves)" in _logs(capfd)
    (request,) = env.approvals().list_requests(pipeline=env.dag_id)
    assert request.status is Status.EXPIRED
    assert env.staging_rows() == 10


def test_sensor_timeout_never_approves(env):
    run = env.run(_purge_dag(env, timeout=3))
    states = env.states(run)
    assert states["purge_approval"][0] == "failed"
    assert states["purge"][0] == "upstream_failed"
    (request,) = env.approvals().list_requests(pipeline=env.dag_id)
    assert request.status is Status.PENDING
    assert env.staging_rows() == 10


def test_gate_succeeds_at_once_when_nothing_needs_approval(env):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        gated_sql(
            "count",
            "SELECT COUNT(*) FROM staging_orders",
            "crm.purge",
            conn_id="crm",
            poke_interval=1,
        )
    run = env.run(dag)
    assert env.states(run) == {"count_approval": ("success", 1), "count": ("success", 1)}
    assert env.approvals().list_requests(pipeline=env.dag_id) == []


def test_gate_fails_at_once_on_a_blocked_statement(env, capfd):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        gated_sql("drop", "DROP TABLE staging_orders", "crm.purge", conn_id="crm", poke_interval=1)
    run = env.run(dag)
    assert env.states(run)["drop_approval"] == ("failed", 1)
    assert "lgpd-tasks refused a statement in scope 'crm.purge'" in _logs(capfd)
    assert env.staging_rows() == 10


def test_ungated_statement_fails_with_request_id_and_runs_after_approval_and_clear(env, capfd):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        LgpdSqlOperator(task_id="purge", conn_id="crm", scope="crm.purge", sql=PURGE, retries=2)
    when = datetime(2024, 5, 1, tzinfo=UTC)
    first = env.run(dag, logical_date=when, run_after=when)
    assert env.states(first) == {"purge": ("failed", 1)}
    (request,) = env.approvals().list_requests(pipeline=env.dag_id)
    logs = _logs(capfd)
    assert f"approve request {request.id}" in logs
    assert f"/lgpd/api/approvals/{request.id}/approve" in logs
    assert env.staging_rows() == 10
    # the user who triggered the run (dag.test() names it "dag_test") may not approve it
    assert request.requested_user == "dag_test"
    with pytest.raises(ApprovalError, match="cannot decide"):
        env.approvals().approve(request.id, Approver("dag_test"), "mine")

    env.approvals().approve(request.id, Approver("ana.aprovadora"), "ok")
    second = env.run(dag, logical_date=when, run_after=when)
    assert second.run_id == first.run_id
    assert env.states(second)["purge"][0] == "success"
    assert env.staging_rows() == 10 - OLD_ROWS
    assert env.approvals().get(request.id).consumed_at is not None


def test_sensor_accepts_the_task_id_of_the_guarded_task(env):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        gate = LgpdApprovalSensor(
            task_id="gate", statement_task="purge", poke_interval=1, timeout=timedelta(minutes=1)
        )
        purge = LgpdSqlOperator(task_id="purge", conn_id="crm", scope="crm.purge", sql=PURGE)
        gate >> purge
    with env.approver("approve"):
        run = env.run(dag)
    assert env.states(run) == {"gate": ("success", 1), "purge": ("success", 1)}


def test_sensor_fails_when_its_statement_task_is_not_a_guarded_operator(env, capfd):
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        LgpdApprovalSensor(task_id="gate", statement_task="missing", poke_interval=1)
    run = env.run(dag)
    assert env.states(run) == {"gate": ("failed", 1)}
    assert "statement_task 'missing' is not an LgpdSqlOperator in this DAG" in _logs(capfd)


def test_each_mapped_instance_asks_and_is_approved_on_its_own(env):
    """Mapped instances run the same statement with other values: approving one instance's
    request admits that instance only."""
    from airflow.utils.session import create_session

    purge = "DELETE FROM staging_orders WHERE created_at < :cutoff"
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        LgpdSqlOperator.partial(
            task_id="purge", conn_id="crm", scope="crm.purge", sql=purge
        ).expand(parameters=[{"cutoff": "2023-03-01"}, {"cutoff": "2023-06-01"}])

    def states(run):
        with create_session() as session:
            return {ti.map_index: str(ti.state) for ti in run.get_task_instances(session=session)}

    when = datetime(2024, 5, 1, tzinfo=UTC)
    first = env.run(dag, logical_date=when, run_after=when)
    assert states(first) == {0: "failed", 1: "failed"}
    requests = {r.instance: r for r in env.approvals().list_requests(pipeline=env.dag_id)}
    assert set(requests) == {"0", "1"}
    assert requests["0"].fingerprint == requests["1"].fingerprint  # the same statement

    env.approvals().approve(requests["0"].id, Approver("ana.aprovadora"), "only the first")
    second = env.run(dag, logical_date=when, run_after=when)
    assert states(second) == {0: "success", 1: "failed"}
    assert env.staging_rows() == 10 - 3  # rows of January and February 2023 only
    assert env.approvals().get(requests["0"].id).consumed_at is not None
    assert env.approvals().get(requests["1"].id).status is Status.PENDING


def test_an_approval_does_not_admit_values_changed_after_it(env, monkeypatch):
    """The cutoff comes from a Variable; it is changed after the approval and before the
    task is cleared: the approved request does not admit the new value."""
    monkeypatch.setenv("AIRFLOW_VAR_PURGE_CUTOFF", "2023-03-01")
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        LgpdSqlOperator(
            task_id="purge",
            conn_id="crm",
            scope="crm.purge",
            sql="DELETE FROM staging_orders WHERE created_at < :cutoff",
            parameters={"cutoff": "{{ var.value.purge_cutoff }}"},
        )
    when = datetime(2024, 5, 1, tzinfo=UTC)
    first = env.run(dag, logical_date=when, run_after=when)
    assert env.states(first) == {"purge": ("failed", 1)}
    (asked,) = env.approvals().list_requests(pipeline=env.dag_id)
    env.approvals().approve(asked.id, Approver("ana.aprovadora"), "January and February")

    monkeypatch.setenv("AIRFLOW_VAR_PURGE_CUTOFF", "2099-01-01")
    second = env.run(dag, logical_date=when, run_after=when)
    assert env.states(second)["purge"][0] == "failed"
    assert env.staging_rows() == 10
    requests = env.approvals().list_requests(pipeline=env.dag_id)
    assert len(requests) == 2
    assert env.approvals().get(asked.id).consumed_at is None

    monkeypatch.setenv("AIRFLOW_VAR_PURGE_CUTOFF", "2023-03-01")
    third = env.run(dag, logical_date=when, run_after=when)
    assert env.states(third)["purge"][0] == "success"
    assert env.staging_rows() == 10 - 3
    assert env.approvals().get(asked.id).consumed_at is not None


def test_a_query_tag_rendered_per_task_does_not_split_the_gate_from_its_task(env):
    """The gate renders the task's SQL in its own context: a comment naming the task
    instance differs between the two, yet the approval is the task's."""
    tagged = PURGE + " /* {{ ti.task_id }} try {{ ti.try_number }} */"
    with DAG(env.dag_id, schedule=None, start_date=START) as dag:
        gated_sql("purge", tagged, "crm.purge", conn_id="crm", poke_interval=1)
    with env.approver("approve", "janela de manutenção") as decided:
        run = env.run(dag)
    assert env.states(run) == {"purge_approval": ("success", 1), "purge": ("success", 1)}
    assert env.staging_rows() == 10 - OLD_ROWS
    (request_id,) = decided
    assert env.approvals().get(request_id).consumed_at is not None
    assert len(env.approvals().list_requests(pipeline=env.dag_id)) == 1


def test_the_trigger_ends_at_once_on_a_store_that_does_not_exist(tmp_path):
    """A wrong audit URL in the trigger is not a store to create and wait on."""
    import asyncio

    from lgpd_tasks_airflow.triggers import ApprovalTrigger

    url = f"sqlite:///{tmp_path}/typo.db"
    trigger = ApprovalTrigger(request_ids=["apr_0123"], audit_url=url, poll_interval=0.1)

    async def first_event():
        async for event in trigger.run():
            return event
        return None

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=30))
    assert event.payload["status"] == "error"
    assert "no such file" in event.payload["message"]
    assert not (tmp_path / "typo.db").exists()
