"""What every lgpd-tasks Airflow piece needs at run time: settings, identity, error translation.

Settings are read when a task runs, never at import or in ``__init__``:

- the policy file: the operator's ``policy`` argument, else ``[lgpd] policy_file`` in the
  Airflow configuration (``AIRFLOW__LGPD__POLICY_FILE``), else ``$LGPD_POLICY_FILE``;
- the audit store: the Airflow connection ``lgpd_audit`` (or the id in ``[lgpd]
  audit_conn_id``), else ``$LGPD_AUDIT_URL``, else ``[lgpd] audit_url``. Tasks under a real
  executor may not use Airflow's metadata database, so the audit store has its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseHook, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException

from lgpd_tasks.approvals import ApprovalStore
from lgpd_tasks.audit import AuditStore
from lgpd_tasks.errors import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalRequired,
    AuditStoreUnusable,
    AuditUnavailable,
    CredentialError,
    LgpdError,
    PolicyError,
    StatementFailed,
    StatementRefused,
    UsageError,
)
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import POLICY_ENV, Policy, load_policy

if TYPE_CHECKING:
    from airflow.sdk import Connection

AUDIT_CONN_ID = "lgpd_audit"
"""The Airflow connection that holds the audit store, unless ``[lgpd] audit_conn_id`` says otherwise."""

AUDIT_URL_ENV = "LGPD_AUDIT_URL"
"""The environment variable read when there is no ``lgpd_audit`` connection."""

SECTION = "lgpd"


class LgpdConfigurationError(AirflowFailException):
    """lgpd-tasks is not configured well enough to run a task (no policy, no audit store)."""


def _conf(key: str) -> str | None:
    value = conf.get(SECTION, key, fallback=None)
    return str(value) if value not in (None, "") else None


def policy_path(explicit: str | os.PathLike[str] | None = None) -> str:
    """The policy file a task uses: the argument, ``[lgpd] policy_file`` or ``$LGPD_POLICY_FILE``."""
    if explicit:
        return os.fspath(explicit)
    found = _conf("policy_file") or os.environ.get(POLICY_ENV)
    if not found:
        raise LgpdConfigurationError(
            "no lgpd-tasks policy file: pass policy=..., set [lgpd] policy_file in the Airflow "
            f"configuration (AIRFLOW__LGPD__POLICY_FILE) or ${POLICY_ENV}"
        )
    return found


def load_task_policy(explicit: str | os.PathLike[str] | None = None) -> Policy:
    with translate_errors():
        return load_policy(policy_path(explicit))


def audit_url(conn_id: str | None = None) -> str:
    """The audit store URL from the ``lgpd_audit`` connection, ``$LGPD_AUDIT_URL`` or config."""
    conn_id = conn_id or _conf("audit_conn_id") or AUDIT_CONN_ID
    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        connection = None
    if connection is not None:
        return url_from_connection(connection)
    found = os.environ.get(AUDIT_URL_ENV) or _conf("audit_url")
    if not found:
        raise LgpdConfigurationError(
            f"no lgpd-tasks audit store: create the Airflow connection {conn_id!r} or set "
            f"${AUDIT_URL_ENV} (sqlite:///path/audit.db or postgresql://user@host:port/db)"
        )
    return found


def url_from_connection(connection: Connection) -> str:
    """A SQLAlchemy-style URL from an Airflow connection (``extra.url`` wins when present)."""
    extra: Mapping[str, Any] = connection.extra_dejson or {}
    if extra.get("url"):
        return str(extra["url"])
    kind = (connection.conn_type or "").lower()
    if kind == "sqlite":
        return f"sqlite:///{connection.host}"
    if kind in {"postgres", "postgresql"}:
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql",
            username=connection.login or None,
            password=connection.password or None,
            host=connection.host or None,
            port=connection.port or None,
            database=connection.schema or None,
        ).render_as_string(hide_password=False)
    raise LgpdConfigurationError(
        f"connection {connection.conn_id!r} has type {kind!r}: the lgpd-tasks audit store "
        "needs a sqlite or postgres connection (or extra {'url': ...})"
    )


def audit_store(conn_id: str | None = None) -> AuditStore:
    with translate_errors():
        return AuditStore.from_url(audit_url(conn_id))


def approval_store(conn_id: str | None = None) -> ApprovalStore:
    return ApprovalStore(audit_store(conn_id))


def task_identity(context: Mapping[str, Any], task_id: str | None = None) -> TaskIdentity:
    """The identity of the running task instance, or of ``task_id`` in the same run.

    The approval gate opens its request under the *guarded* task's identity so that the
    operator, when it runs, finds it by fingerprint, DAG, task and run. The user who
    triggered the run (when Airflow knows one) is the identity's user: the approvals store
    refuses to let that person approve what the run asks.
    """
    ti = context["ti"]
    triggered_by = getattr(context.get("dag_run"), "triggering_user_name", None)
    map_index = getattr(ti, "map_index", -1)
    own = task_id is None or task_id == ti.task_id
    extra = {"ti_id": str(ti.id)} if own and getattr(ti, "id", None) else {}
    return TaskIdentity(
        orchestrator="airflow",
        pipeline=ti.dag_id,
        task=task_id or ti.task_id,
        run_id=ti.run_id,
        attempt=int(ti.try_number or 1) if own else 1,
        map_index=map_index if map_index is not None and map_index >= 0 else None,
        user=str(triggered_by) if triggered_by else None,
        extra=extra,
    )


def how_to_approve(request_id: str) -> str:
    return (
        f"approve request {request_id} in the Airflow UI (LGPD > Approvals, or POST "
        f"/lgpd/api/approvals/{request_id}/approve) or with `lgpd-tasks approvals approve "
        f"{request_id} --db <audit url>`, then clear this task; or put the statement behind "
        "an approval gate (gated_sql / LgpdApprovalSensor)"
    )


def refusal_message(err: StatementRefused) -> str:
    rules = ", ".join(dict.fromkeys(r.rule for r in err.reasons)) or "guard"
    return f"lgpd-tasks refused a statement in scope {err.scope!r} (rule: {rules}): {err}"


def raise_for(err: LgpdError) -> NoReturn:
    """Raise the Airflow exception that makes Airflow retry or not, as the error deserves.

    Policy refusals, denials, expiries and broken configuration fail without retry;
    an unreachable audit store or a failing database are retried.
    """
    if isinstance(err, (ApprovalDenied, ApprovalExpired)):
        raise AirflowFailException(refusal_message(err)) from err
    if isinstance(err, ApprovalRequired):
        raise AirflowFailException(
            f"{refusal_message(err)}; it needs approval: {how_to_approve(err.request_id)}"
        ) from err
    if isinstance(err, StatementRefused):
        raise AirflowFailException(refusal_message(err)) from err
    if isinstance(err, PolicyError):
        raise LgpdConfigurationError(f"lgpd-tasks policy: {err}") from err
    if isinstance(err, (AuditStoreUnusable, UsageError)):
        raise LgpdConfigurationError(f"lgpd-tasks: {err}") from err
    if isinstance(err, AuditUnavailable):
        raise AirflowException(f"lgpd-tasks audit store unavailable (will retry): {err}") from err
    if isinstance(err, StatementFailed):
        raise AirflowException(f"statement failed ({err.error_class}): {err}") from err
    if isinstance(err, CredentialError):
        raise AirflowException(f"lgpd-tasks: {err}") from err
    raise AirflowFailException(f"lgpd-tasks: {err}") from err


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn lgpd-tasks errors into the Airflow exceptions that drive retries."""
    try:
        yield
    except LgpdError as err:
        raise_for(err)
