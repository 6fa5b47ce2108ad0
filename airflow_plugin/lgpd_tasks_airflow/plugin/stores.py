"""Where the LGPD pages find the audit and approvals store: ``LGPD_AUDIT_URL`` or ``lgpd_audit``.

Resolved on each request, never at import: the api-server may start before the connection
exists, and an operator may point the pages at another store without a restart.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from sqlalchemy.engine import URL

from lgpd_tasks.approvals import ApprovalStore
from lgpd_tasks.audit import AuditStore
from lgpd_tasks.errors import AuditUnavailable
from lgpd_tasks.policy import POLICY_ENV, load_policy
from lgpd_tasks.policy.model import ApprovalsSpec

AUDIT_URL_ENV = "LGPD_AUDIT_URL"
AUDIT_CONN_ID = "lgpd_audit"

_STORES: dict[str, AuditStore] = {}
_LOCK = threading.Lock()


def audit_url() -> str:
    """The store's URL: the environment variable first, then the Airflow connection."""
    from_env = os.environ.get(AUDIT_URL_ENV, "").strip()
    if from_env:
        return from_env
    conn = _airflow_connection(AUDIT_CONN_ID)
    if conn is None:
        raise AuditUnavailable(
            f"no audit store configured: set {AUDIT_URL_ENV} or create the Airflow "
            f"connection {AUDIT_CONN_ID!r} (sqlite or postgres)"
        )
    return connection_url(conn)


def approval_store() -> ApprovalStore:
    """The approvals store (and through ``.audit`` the audit store) for this request.

    It enforces the policy's ``approvals`` rules (who may approve, verified identities)
    when the api-server knows the policy file; a policy file that is set but broken
    raises :class:`~lgpd_tasks.errors.PolicyError` rather than deciding without its rules.
    """
    url = audit_url()
    with _LOCK:
        audit = _STORES.get(url)
        if audit is None:
            # the pages read and decide; they never create a store: a mistyped URL would
            # otherwise show an empty list of approvals and an intact chain of 0 records
            audit = AuditStore.open_existing(url)
            _STORES[url] = audit
    return ApprovalStore(audit, approval_rules())


def policy_path() -> str | None:
    """``LGPD_POLICY_FILE``, else ``[lgpd] policy_file`` in Airflow's configuration."""
    from_env = os.environ.get(POLICY_ENV, "").strip()
    if from_env:
        return from_env
    from airflow.configuration import conf

    configured = conf.get("lgpd", "policy_file", fallback="") or ""
    return configured.strip() or None


def approval_rules() -> ApprovalsSpec:
    path = policy_path()
    if path is None:
        return ApprovalsSpec()
    return load_policy(path).approvals


def connection_url(conn: Any) -> str:
    """A ``sqlite:///`` or ``postgresql://`` URL from an Airflow connection.

    An explicit ``{"url": ...}`` in the connection's extra wins; otherwise sqlite takes the
    path from ``host`` and postgres is built from host, port, login, password and schema.
    """
    extra = conn.extra_dejson or {}
    if extra.get("url"):
        return str(extra["url"])
    kind = (conn.conn_type or "").lower()
    if kind == "sqlite":
        path = conn.host or conn.schema
        if not path:
            raise AuditUnavailable(f"connection {conn.conn_id!r} (sqlite) has no path in host")
        return f"sqlite:///{path}"
    if kind in {"postgres", "postgresql"}:
        return URL.create(
            "postgresql",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
        ).render_as_string(hide_password=False)
    raise AuditUnavailable(
        f"connection {conn.conn_id!r} has type {kind!r}: the audit store needs sqlite or postgres"
    )


def _airflow_connection(conn_id: str) -> Any | None:
    # The api-server is not a task: the models API reads environment variables, secrets
    # backends and the metadata database without a supervisor process.
    from airflow.models.connection import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
