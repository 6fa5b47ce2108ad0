"""Approval gates: a sensor that waits for a person's approval of a guarded task's SQL.

``LgpdApprovalSensor(statement_task=op)`` renders and analyses ``op``'s SQL exactly as the
operator will run it, opens the approval request under *the operator's* identity (so the
operator finds it by fingerprint, DAG, task and run), succeeds at once when nothing needs
approval, and otherwise waits: in ``reschedule`` mode by default, or deferred to the
triggerer with ``deferrable=True``. Denied or expired fails without retry; so does a
statement the guard blocks. A timeout never approves. ``gated_sql`` builds both tasks.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from contextlib import closing
from datetime import timedelta
from typing import Any

from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.sdk import BaseSensorOperator, PokeReturnValue, TaskGroup, conf
from airflow.sdk.exceptions import AirflowFailException

from lgpd_tasks.approvals import ApprovalRequest, ApprovalStore, NewRequest, Status
from lgpd_tasks.approvals.values import statement_values
from lgpd_tasks.audit.store import isotime, utcnow
from lgpd_tasks.errors import StatementBlocked
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.sql import Decision
from lgpd_tasks_airflow.hooks import GuardSettings, guard_hook
from lgpd_tasks_airflow.operators import LgpdSqlOperator
from lgpd_tasks_airflow.runtime import audit_url, refusal_message, task_identity, translate_errors
from lgpd_tasks_airflow.triggers import ApprovalTrigger, verdict

DEFAULT_TIMEOUT = timedelta(hours=24)


class LgpdApprovalSensor(BaseSensorOperator):
    """Wait until a person approves the statements of ``statement_task`` that need it.

    :param statement_task: the guarded task (an ``LgpdSqlOperator`` or its task id).
    :param deferrable: wait in the triggerer instead of rescheduling.
    :param poll_interval: seconds between approval-store reads (trigger) — the sensor's
        ``poke_interval`` is used when not given.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#f6e3a1"

    def __init__(
        self,
        *,
        statement_task: LgpdSqlOperator | str,
        deferrable: bool | None = None,
        poll_interval: float | None = None,
        mode: str = "reschedule",
        poke_interval: timedelta | float = 30,
        timeout: timedelta | float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(mode=mode, poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.statement_task_id = (
            statement_task if isinstance(statement_task, str) else statement_task.task_id
        )
        if deferrable is None:
            deferrable = conf.getboolean("operators", "default_deferrable", fallback=False)
        self.deferrable = deferrable
        self.poll_interval = poll_interval

    # -- finding and analysing the guarded statement -------------------------------------

    def _statement_operator(self, context: Mapping[str, Any]) -> LgpdSqlOperator:
        task = self._statement_task()
        if not isinstance(task, LgpdSqlOperator):
            raise AirflowFailException(
                f"statement_task {self.statement_task_id!r} is not an LgpdSqlOperator in this DAG"
            )
        rendered = copy.copy(task)
        rendered.render_template_fields(context)
        return rendered

    def open_requests(self, context: Mapping[str, Any]) -> list[ApprovalRequest]:
        """Analyse the guarded statements; open (or find) a request for each needing approval."""
        op = self._statement_operator(context)
        identity = task_identity(context, op.task_id)
        settings = op.guard_settings(context, identity=identity)
        if not op.conn_id:
            raise AirflowFailException(f"task {op.task_id!r} has no conn_id")
        hook = op.get_hook(conn_id=op.conn_id, hook_params=dict(op.hook_params))
        if not isinstance(hook, DbApiHook):
            raise AirflowFailException(f"connection {op.conn_id!r} has no DB-API hook")
        statements = _statements(hook, op.sql, op.split_statements)
        approvals = ApprovalStore(settings.audit)
        requests: list[ApprovalRequest] = []
        with translate_errors(), closing(guard_hook(hook, settings).get_conn()) as conn:
            for statement in statements:
                decision = conn.check(statement)
                if decision.action == "block":
                    raise _blocked(decision, settings.scope.name)
                if decision.action == "approve":
                    # hook.run hands each statement the same parameters
                    values = statement_values(
                        statement, op.parameters, dialect=settings.policy.dialect
                    )
                    requests.append(_request_for(approvals, decision, values, identity, settings))
        return requests

    # -- reschedule / poke ---------------------------------------------------------------

    def poke(self, context: Any) -> PokeReturnValue:
        requests = self.open_requests(context)
        if not requests:
            self.log.info("No statement of %s needs approval", self.statement_task_id)
            return PokeReturnValue(is_done=True, xcom_value={"approval_requests": []})
        outcome = verdict(requests)
        if outcome is None:
            pending = [r.id for r in requests if r.status is Status.PENDING]
            self.log.info(
                "Waiting for approval of %s: request(s) %s (scope %s)",
                self.statement_task_id,
                ", ".join(pending),
                requests[0].scope,
            )
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._finish(outcome))

    def _finish(self, outcome: Mapping[str, Any]) -> dict[str, Any]:
        if outcome["status"] != "approved":
            raise AirflowFailException(str(outcome["message"]))
        self.log.info("Approved: %s may run (%s)", self.statement_task_id, outcome["message"])
        return {"approval_requests": list(outcome["request_ids"])}

    # -- deferrable ----------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        requests = self.open_requests(context)
        outcome = verdict(requests) if requests else None
        if not requests:
            self.log.info("No statement of %s needs approval", self.statement_task_id)
            return {"approval_requests": []}
        if outcome is not None:
            return self._finish(outcome)
        self.log.info(
            "Deferring until request(s) %s are decided", ", ".join(r.id for r in requests)
        )
        with translate_errors():
            url = audit_url(self._audit_conn_id())
        self.defer(
            trigger=ApprovalTrigger(
                request_ids=[r.id for r in requests],
                audit_url=url,
                poll_interval=self.poll_interval or self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: Mapping[str, Any] | None = None) -> Any:
        if not event:
            raise AirflowFailException("the approval trigger ended without a decision")
        return self._finish(event)

    def _audit_conn_id(self) -> str | None:
        return getattr(self._statement_task(), "audit_conn_id", None)

    def _statement_task(self) -> Any:
        dag = self.dag
        return (
            dag.get_task(self.statement_task_id) if dag.has_task(self.statement_task_id) else None
        )


def _statements(hook: DbApiHook, sql: str | list[str], split: bool | None) -> list[str]:
    """The statements the operator's ``hook.run`` will execute, in order."""
    if isinstance(sql, str):
        if split:
            return hook.split_sql_string(sql=sql, strip_semicolon=hook.strip_semicolon)
        return [sql] if sql.strip() else []
    return list(sql)


def _blocked(decision: Decision, scope: str) -> AirflowFailException:
    reasons = [r for r in decision.reasons if r.action == "block"]
    refused = StatementBlocked(
        "; ".join(f"{r.rule}: {r.message}" for r in reasons) or "blocked",
        scope=scope,
        reasons=reasons,
    )
    return AirflowFailException(refusal_message(refused))


def _request_for(
    approvals: ApprovalStore,
    decision: Decision,
    values: bytes,
    identity: TaskIdentity,
    settings: GuardSettings,
) -> ApprovalRequest:
    """The newest usable or pending request for this statement and its values, or a new one."""
    ttl = settings.policy.approvals.ttl
    existing = approvals.find(decision.fingerprint, identity, values)
    if existing is not None:
        existing = approvals.get(existing.id)  # find() does not expire; get() does
        if existing.status is Status.PENDING or existing.usable:
            return existing
        # as the guarded connection does: a recent denial or expiry stands; an old one or
        # a used approval means this is a new run of the statement, which needs a new request
        if existing.status in (Status.DENIED, Status.EXPIRED) and (
            existing.decided_at or ""
        ) > isotime(utcnow() - ttl):
            return existing
    scope = settings.scope
    return approvals.request(
        identity,
        NewRequest(
            fingerprint=decision.fingerprint,
            scope=scope.name,
            purpose=scope.purpose.name,
            legal_basis=scope.purpose.legal_basis,
            statement_kind=",".join(s.kind for s in decision.statements),
            normalized=decision.normalized,
            reasons=decision.reasons,
            ttl=ttl,
            min_approvers=settings.policy.approvals.min_approvers,
            values=values,
        ),
        none_pending=True,  # looked up above
    )


def gated_sql(
    task_id: str,
    sql: str | list[str],
    scope: str,
    *,
    conn_id: str,
    policy: str | os.PathLike[str] | None = None,
    deferrable: bool = False,
    poke_interval: timedelta | float = 30,
    timeout: timedelta | float = DEFAULT_TIMEOUT,
    sensor_kwargs: Mapping[str, Any] | None = None,
    **operator_kwargs: Any,
) -> TaskGroup:
    """An approval gate and the guarded statement behind it: ``<task_id>_approval >> <task_id>``.

    Returns the task group holding ``sensor >> operator`` (task ids unprefixed), so
    ``extract >> gated_sql(...) >> report`` wires the sensor after ``extract`` and the
    operator before ``report``.
    """
    dag = operator_kwargs.get("dag")
    where: dict[str, Any] = {"dag": dag} if dag is not None else {}
    with TaskGroup(group_id=f"{task_id}_gate", prefix_group_id=False, **where) as group:
        operator = LgpdSqlOperator(
            task_id=task_id, sql=sql, scope=scope, conn_id=conn_id, policy=policy, **operator_kwargs
        )
        sensor = LgpdApprovalSensor(
            task_id=f"{task_id}_approval",
            statement_task=operator,
            deferrable=deferrable,
            poke_interval=poke_interval,
            timeout=timeout,
            **where,
            **dict(sensor_kwargs or {}),
        )
        sensor >> operator
    return group
