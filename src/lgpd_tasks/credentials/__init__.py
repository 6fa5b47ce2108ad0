"""Brokers that issue a scoped database credential per task attempt, and signed identity tokens."""

from __future__ import annotations

import os

from lgpd_tasks.credentials.base import (
    CredentialBroker,
    ScopedCredential,
    StaticBroker,
    is_postgres_url,
    libpq_url,
    parse_url,
    redact_url,
)
from lgpd_tasks.credentials.postgres import (
    PostgresRoleBroker,
    RoleMarker,
    SweepReport,
    SweptRole,
    TaskRole,
)
from lgpd_tasks.errors import CredentialError
from lgpd_tasks.policy import Policy

__all__ = [
    "CredentialBroker",
    "PostgresRoleBroker",
    "RoleMarker",
    "ScopedCredential",
    "StaticBroker",
    "SweepReport",
    "SweptRole",
    "TaskRole",
    "broker_from_policy",
    "is_postgres_url",
    "libpq_url",
    "redact_url",
]


def broker_from_policy(
    policy: Policy, db_url: str, *, admin_url: str | None = None
) -> CredentialBroker:
    """The broker the policy's ``credentials:`` section asks for, for the database at ``db_url``.

    ``broker: postgres_role`` on anything but PostgreSQL is refused rather than quietly
    weakened to the static broker: the policy asked the database to enforce the scope.
    The administrator URL is ``admin_url`` when given, else the environment variable
    ``credentials.admin_url_env`` names, else ``db_url`` itself.

    >>> from lgpd_tasks.policy import Policy
    >>> policy = Policy.from_dict({"version": 1, "dialect": "sqlite"})
    >>> broker_from_policy(policy, "sqlite:///x.db")
    StaticBroker(url='sqlite:///x.db', ttl=0:15:00)
    """
    spec = policy.credentials
    if spec.broker == "static":
        return StaticBroker(db_url, ttl=spec.ttl)
    parse_url(db_url)  # a URL only its port spoils is named as such, not as "not PostgreSQL"
    if not is_postgres_url(db_url):
        raise CredentialError(
            f"the policy's credentials.broker is postgres_role but the database at "
            f"{redact_url(db_url)} is not PostgreSQL"
        )
    if policy.dialect != "postgres":
        raise CredentialError(
            f"the policy's credentials.broker is postgres_role but its dialect is "
            f"{policy.dialect!r}"
        )
    if admin_url is None and spec.admin_url_env:
        admin_url = os.environ.get(spec.admin_url_env, "")
        if not admin_url:
            raise CredentialError(
                f"credentials.admin_url_env names ${spec.admin_url_env}, which is not set"
            )
    return PostgresRoleBroker(
        admin_url or db_url,
        target_url=db_url,
        ttl=spec.ttl,
        connection_limit=spec.connection_limit,
        owner_role=spec.owner_role,
        role_prefix=spec.role_prefix,
    )
