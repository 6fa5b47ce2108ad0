"""One PostgreSQL role broker per worker process, and the role's login on an Airflow connection.

With ``credentials: {broker: postgres_role}`` in the policy, a guarded hook's connections
log in as a role issued for the running task attempt. The task's ``conn_id`` names the
database; the broker's administrator is that connection's login, or the URL in the
environment variable ``credentials.admin_url_env`` names when the policy sets it (then the
connection's own login is not used at all). Statements never run as the administrator.

The broker keeps one administrator connection per worker process (not one per statement or
per task) and is closed when the process exits; a broker made before a fork is not reused
by the child, whose copy of that socket belongs to the parent.
"""

from __future__ import annotations

import atexit
import copy
import os
import threading
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL

from lgpd_tasks.credentials import CredentialBroker, PostgresRoleBroker, broker_from_policy
from lgpd_tasks.credentials.base import parse_url
from lgpd_tasks.policy import Policy
from lgpd_tasks_airflow.runtime import LgpdConfigurationError, url_from_connection

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import Connection

_LOCK = threading.Lock()
_BROKERS: dict[tuple[str, str, str], CredentialBroker] = {}
_PID = os.getpid()


def target_url(hook: DbApiHook) -> str:
    """The database a hook's connection points at, as a URL (its login included).

    The hook's own ``database`` (``hook_params={"database": ...}``) wins over the
    connection's schema, as it does when the hook connects.
    """
    connection = hook.connection
    if (connection.extra_dejson or {}).get("iam"):
        raise LgpdConfigurationError(
            f"connection {connection.conn_id!r} logs in with IAM tokens; the lgpd-tasks role "
            "broker cannot log in as a task role through it (use a password login)"
        )
    url = parse_url(url_from_connection(connection))
    database = getattr(hook, "database", None)
    if database:
        url = url.set(database=str(database))
    return url.render_as_string(hide_password=False)


def role_connection(connection: Connection, login_url: str) -> Connection:
    """A copy of ``connection`` that logs in with ``login_url``'s user and password."""
    login: URL = parse_url(login_url)
    # a copy set field by field, as PostgresHook itself does for IAM logins
    copied = copy.deepcopy(connection)
    copied.login = login.username
    copied.password = login.password
    return copied


def worker_broker(policy: Policy, url: str) -> CredentialBroker:
    """The broker for ``url`` under ``policy``'s ``credentials:``, one per worker process."""
    global _PID
    spec = policy.credentials
    admin = os.environ.get(spec.admin_url_env, "") if spec.admin_url_env else ""
    key = (url, admin, spec.model_dump_json())
    with _LOCK:
        if os.getpid() != _PID:
            # forked: the parent's brokers hold the parent's sockets; start afresh
            _BROKERS.clear()
            _PID = os.getpid()
        broker = _BROKERS.get(key)
        if broker is None:
            broker = broker_from_policy(policy, url)
            _BROKERS[key] = broker
        return broker


@atexit.register
def close_brokers() -> None:
    """Close every broker's administrator connection (roles are revoked by their connections)."""
    with _LOCK:
        brokers = list(_BROKERS.values()) if os.getpid() == _PID else []
        _BROKERS.clear()
    for broker in brokers:
        if isinstance(broker, PostgresRoleBroker):
            broker.close()


__all__ = ["close_brokers", "role_connection", "target_url", "worker_broker"]
