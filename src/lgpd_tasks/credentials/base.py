"""What every credential broker hands out, and the static broker for databases without roles."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from lgpd_tasks import dburl
from lgpd_tasks.dburl import redact_url as redact_url  # re-exported
from lgpd_tasks.errors import CredentialError, UsageError
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Scope
from lgpd_tasks.policy.model import check_credential_ttl

DEFAULT_TTL = timedelta(minutes=15)


class DatabaseUrlInvalid(CredentialError, UsageError):
    """A database URL that cannot be parsed: a configuration error, not worth a retry."""


def parse_url(url: str) -> URL:
    """A SQLAlchemy URL, or a :class:`DatabaseUrlInvalid` that shows it without passwords.

    >>> parse_url("postgresql://app:s3cret@db:notaport/test")
    Traceback (most recent call last):
    ...
    lgpd_tasks.credentials.base.DatabaseUrlInvalid: the database URL \
postgresql://app:***@db:notaport/test cannot be parsed: the port must be a number
    """
    return dburl.parse_url(url, DatabaseUrlInvalid)


def valid_ttl(ttl: timedelta) -> timedelta:
    """``ttl`` if a credential may live that long (0 < ttl <= 7 days), else a CredentialError."""
    try:
        return check_credential_ttl(ttl)
    except ValueError as err:
        raise CredentialError(str(err)) from None


def is_postgres_url(url: str) -> bool:
    """Whether a SQLAlchemy-style URL points at PostgreSQL (any driver).

    >>> is_postgres_url("postgresql+psycopg://u@h/db"), is_postgres_url("sqlite:///x.db")
    (True, False)
    """
    try:
        return make_url(url).get_backend_name() == "postgresql"
    except (ArgumentError, ValueError):
        return False


def libpq_url(url: str | URL) -> str:
    """The ``postgresql://`` form libpq (psycopg) accepts, dropping a SQLAlchemy driver suffix.

    >>> libpq_url("postgresql+psycopg://u:p@h:5432/db?sslmode=require")
    'postgresql://u:p@h:5432/db?sslmode=require'
    """
    parsed = url if isinstance(url, URL) else parse_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class ScopedCredential:
    """A database login for one task attempt and one scope, valid until ``expires_at``.

    ``url`` carries the password; ``repr()`` and ``str()`` never show it.

    >>> from lgpd_tasks.identity import TaskIdentity
    >>> cred = ScopedCredential(
    ...     url="postgresql://lgpd_t_1:pw@db/test", role="lgpd_t_1",
    ...     expires_at=datetime(2030, 1, 1, tzinfo=UTC), scope="report.extract",
    ...     identity=TaskIdentity("cli", "cli", "maria"))
    >>> "pw" in repr(cred), "pw" in str(cred)
    (False, False)
    """

    url: str = field(repr=False)
    role: str | None
    expires_at: datetime
    scope: str
    identity: TaskIdentity

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """What an audit record may hold about the credential (no password)."""
        return {
            "role": self.role,
            "expires_at": self.expires_at.isoformat(),
            "scope": self.scope,
            "url": self.redacted_url,
        }

    def __repr__(self) -> str:
        return (
            f"ScopedCredential(url={self.redacted_url!r}, role={self.role!r}, "
            f"expires_at={self.expires_at.isoformat()!r}, scope={self.scope!r}, "
            f"principal={self.identity.principal!r})"
        )

    __str__ = __repr__


@runtime_checkable
class CredentialBroker(Protocol):
    """Issues a database credential for (task attempt, scope) and revokes it afterwards."""

    def issue(
        self, identity: TaskIdentity, scope: Scope, *, ttl: timedelta | None = None
    ) -> ScopedCredential: ...

    def revoke(self, credential: ScopedCredential) -> None: ...


class StaticBroker:
    """Hands every task the configured URL unchanged.

    This is the broker for SQLite and for databases without roles. It is weaker than
    :class:`~lgpd_tasks.credentials.PostgresRoleBroker`: every task shares one login, so
    the SQL guard is the only thing between a task and what its scope does not grant.

    >>> from lgpd_tasks.identity import TaskIdentity
    >>> from lgpd_tasks.policy import Policy
    >>> policy = Policy.from_dict({"version": 1, "dialect": "sqlite",
    ...     "purposes": {"r": {"legal_basis": "consent", "retention": "1d"}},
    ...     "scopes": {"r.x": {"purpose": "r", "read": {"t": "*"}}}})
    >>> broker = StaticBroker("sqlite:///source.db")
    >>> cred = broker.issue(TaskIdentity("cli", "cli", "maria"), policy.scope("r.x"))
    >>> cred.url, cred.role
    ('sqlite:///source.db', None)
    """

    def __init__(self, url: str, *, ttl: timedelta = DEFAULT_TTL) -> None:
        self._url = url
        self.ttl = valid_ttl(ttl)

    def issue(
        self, identity: TaskIdentity, scope: Scope, *, ttl: timedelta | None = None
    ) -> ScopedCredential:
        return ScopedCredential(
            url=self._url,
            role=None,
            expires_at=datetime.now(UTC) + (self.ttl if ttl is None else valid_ttl(ttl)),
            scope=scope.name,
            identity=identity,
        )

    def revoke(self, credential: ScopedCredential) -> None:
        """Nothing to revoke: the shared login outlives every task."""

    def __repr__(self) -> str:
        return f"StaticBroker(url={redact_url(self._url)!r}, ttl={self.ttl})"
