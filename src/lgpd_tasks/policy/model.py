"""The policy file's schema: purposes, scopes, masking and approval settings, validated by pydantic."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PositiveInt,
)

#: Legal bases of LGPD Art. 7 (personal data) and Art. 11 (sensitive data), in snake_case.
LegalBasis = Literal[
    "consent",
    "legal_obligation",
    "public_administration",
    "research",
    "contract_performance",
    "exercise_of_rights",
    "protection_of_life",
    "health_protection",
    "legitimate_interest",
    "credit_protection",
    "fraud_prevention",
]

#: What a scope's ``require_approval`` list may name.
ApprovalTrigger = Literal["delete", "update", "insert", "export", "pii_read"]

_DURATION = re.compile(r"^\s*([0-9]+)\s*(s|m|h|d|w|y)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
#: The longest duration lgpd-tasks reads: dates a duration away must stay representable.
MAX_DURATION = timedelta(days=1000 * 365)
#: The longest a scoped credential (a task role) may live; longer ones are refused.
MAX_CREDENTIAL_TTL = timedelta(days=7)


def parse_duration(value: object) -> timedelta:
    """Parse ``30s``, ``15m``, ``12h``, ``180d``, ``2w`` or ``5y`` (a year is 365 days).

    >>> parse_duration("180d")
    datetime.timedelta(days=180)
    >>> parse_duration("15m").total_seconds()
    900.0
    """
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a duration such as '15m', '12h', '180d' or '5y', got {value!r}")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {match.group(0).strip()!r} is longer than 1000 years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a duration (``timedelta(days=180)`` -> ``180d``)."""
    seconds = int(value.total_seconds())
    for unit in ("y", "w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]


def check_credential_ttl(ttl: timedelta) -> timedelta:
    """A credential lifetime: more than zero and at most :data:`MAX_CREDENTIAL_TTL` (7 days).

    >>> check_credential_ttl(timedelta(0))
    Traceback (most recent call last):
    ...
    ValueError: a credential TTL must be more than zero, got 0s
    """
    if ttl <= timedelta(0):
        raise ValueError(f"a credential TTL must be more than zero, got {format_duration(ttl)}")
    if ttl > MAX_CREDENTIAL_TTL:
        raise ValueError(
            f"a credential TTL may be at most {format_duration(MAX_CREDENTIAL_TTL)}, "
            f"got {format_duration(ttl)}"
        )
    return ttl


CredentialTtl = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(check_credential_ttl),
    PlainSerializer(format_duration, return_type=str),
]


def _column_grant(value: object) -> object:
    if value == "*":
        return "*"
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return value
    raise ValueError('expected a list of column names or "*" for every column')


ColumnGrant = Annotated[Literal["*"] | list[str], BeforeValidator(_column_grant)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PurposeSpec(_Strict):
    """A purpose of processing (LGPD Art. 6 I): what the data is used for and on what basis."""

    description: str = ""
    legal_basis: LegalBasis
    retention: Duration
    data_subjects: list[str] = Field(default_factory=list)


class ScopeSpec(_Strict):
    """What one task may touch: tables and columns to read and write, under one purpose."""

    purpose: str
    description: str = ""
    read: dict[str, ColumnGrant] = Field(default_factory=dict)
    write: dict[str, ColumnGrant] = Field(default_factory=dict)
    max_rows: PositiveInt | None = None
    require_approval: list[ApprovalTrigger] = Field(default_factory=list)
    allow_multiple_statements: bool = False


StrategySpec = Annotated[str | dict[str, Any], Field(union_mode="left_to_right")]


class MaskingSpec(_Strict):
    """How personal fields are masked between tasks.

    ``columns`` names a strategy per column; ``types`` overrides the default strategy of a
    detected type (``cpf``, ``email``, ``phone``...); ``detect`` also finds personal columns
    by name and content; ``mask_all_cpf_shaped`` masks CPF-shaped numbers in free text even
    with wrong check digits; ``sample_size`` and ``threshold`` tune content detection;
    ``chunk_rows`` bounds the rows masked at once.
    """

    columns: dict[str, StrategySpec] = Field(default_factory=dict)
    detect: bool = True
    key_env: str = "LGPD_MASKING_KEY"
    types: dict[str, StrategySpec] = Field(default_factory=dict)
    mask_all_cpf_shaped: bool = False
    sample_size: PositiveInt = 1000
    threshold: float = Field(default=0.8, gt=0, le=1)
    chunk_rows: PositiveInt = 250_000


AsymmetricAlgorithm = Literal["EdDSA", "ES256", "RS256"]


class OidcSpec(_Strict):
    """Which identity provider's tokens verify an approver (``approvals approve --token``).

    ``jwks`` is the provider's JWKS as an ``https://`` URL or a local file path;
    ``groups_claim`` (a dotted path such as ``realm_access.roles`` works) names the claim
    whose values ``approvers`` entries of the form ``group:NAME`` match.
    """

    issuer: str
    audience: str | list[str]
    jwks: str
    groups_claim: str = "groups"
    algorithms: list[AsymmetricAlgorithm] = Field(
        default_factory=lambda: list(get_args(AsymmetricAlgorithm))
    )


class ApprovalsSpec(_Strict):
    """How approval requests behave."""

    ttl: Duration = timedelta(hours=24)
    min_approvers: PositiveInt = 1
    approvers: list[str] = Field(default_factory=list)
    require_verified_identity: bool = False
    oidc: OidcSpec | None = None


_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def _role_name(value: object) -> object:
    if isinstance(value, str) and _ROLE_NAME.match(value) and len(value.encode()) <= 63:
        return value
    raise ValueError(
        f"expected a lower-case role name (letters, digits, '_'; at most 63 bytes), got {value!r}"
    )


def _role_prefix(value: object) -> object:
    if isinstance(value, str) and _ROLE_NAME.match(value) and len(value.encode()) <= 32:
        return value
    raise ValueError(f"expected a lower-case role-name prefix of at most 32 bytes, got {value!r}")


RoleName = Annotated[str, BeforeValidator(_role_name)]
RolePrefix = Annotated[str, BeforeValidator(_role_prefix)]


class CredentialsSpec(_Strict):
    """How each task attempt gets its database login.

    ``static`` hands every task the configured URL (the SQL guard is the only check);
    ``postgres_role`` creates a short-lived PostgreSQL login role per task attempt with
    exactly the scope's column grants, so the database refuses what the scope does not
    grant even if the guard were bypassed. ``admin_url_env`` names the environment
    variable holding the administrator URL the broker uses; without it, the ``--db`` URL
    itself is the administrator's.
    """

    broker: Literal["static", "postgres_role"] = "static"
    ttl: CredentialTtl = timedelta(minutes=15)
    connection_limit: PositiveInt = 2
    owner_role: RoleName = "lgpd_task_owner"
    role_prefix: RolePrefix = "lgpd_t_"
    admin_url_env: str | None = None


SubjectNormalization = Literal["auto", "digits", "casefold", "exact"]


class SubjectKeySpec(_Strict):
    """Which column of a table identifies the data subject of each row (for the subject trail).

    ``key`` holds the subject's identifier (a CPF, an e-mail) — or, with ``references``,
    the value of the referenced table's ``primary_key`` (``crm.orders.customer_id`` ->
    ``crm.customers.id``). ``primary_key`` lets statements that name a row by its id, not by
    the identifier, still be traced once the id and the identifier were seen together.
    ``normalize`` makes ``123.456.789-09`` and ``12345678909`` the same person: ``digits``
    keeps digits only, ``casefold`` trims and lowercases, ``auto`` does ``digits`` when
    only digits and separators are present and ``casefold`` otherwise.
    """

    key: str
    primary_key: str | None = None
    references: str | None = None
    normalize: SubjectNormalization = "auto"
    category: str | None = None


def _subject_key(value: object) -> object:
    return {"key": value} if isinstance(value, str) else value


SubjectKey = Annotated[SubjectKeySpec, BeforeValidator(_subject_key)]


class PolicySpec(_Strict):
    """The whole policy document, as written."""

    version: Literal[1]
    dialect: str = "postgres"
    purposes: dict[str, PurposeSpec] = Field(default_factory=dict)
    scopes: dict[str, ScopeSpec] = Field(default_factory=dict)
    masking: MaskingSpec = Field(default_factory=MaskingSpec)
    approvals: ApprovalsSpec = Field(default_factory=ApprovalsSpec)
    credentials: CredentialsSpec = Field(default_factory=CredentialsSpec)
    #: Table -> its subject key (``{crm.customers: cpf}``), for the record-level trail.
    subjects: dict[str, SubjectKey] = Field(default_factory=dict)
