"""Dagster failures for lgpd-tasks refusals, with the rule, scope, table and request as metadata.

    dagster.Failure
    └── LgpdFailure                  an lgpd-tasks refusal shown in the Dagster UI
        ├── StatementBlockedFailure  the guard blocked the statement (no retry)
        ├── ApprovalRequiredFailure  the statement waits for approval (names the request)
        │   ├── ApprovalDeniedFailure    a person denied it (no retry)
        │   └── ApprovalExpiredFailure   nobody decided in time (no retry)
        ├── ApprovalDecisionFailure  the ``lgpd_approve`` job could not record the decision
        ├── PolicyFailure            the policy file or the resource's configuration (URL) is wrong
        ├── MaskingFailure           an output cannot be masked, so it is not stored
        └── StatementFailedFailure   the database failed the statement (retryable)

Audit-store outages (but not an unusable URL, a ``PolicyFailure``) are not failures: they raise ``dagster.RetryRequested`` so the step runs
again once the store is back, and no statement runs without its audit record meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from lgpd_tasks.errors import (
    ApprovalDenied,
    ApprovalError,
    ApprovalExpired,
    ApprovalRequired,
    AuditStoreUnusable,
    LgpdError,
    MaskingError,
    PolicyError,
    StatementBlocked,
    StatementFailed,
    StatementRefused,
    UsageError,
)

APPROVE_JOB = "lgpd_approve"
DECIDE_OP = "lgpd_decide"


class LgpdFailure(dg.Failure):
    """An lgpd-tasks refusal; ``error`` is the core exception it came from."""

    retryable = False

    def __init__(
        self,
        description: str,
        *,
        error: LgpdError | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.error = error
        super().__init__(
            description=description,
            metadata=dict(metadata or {}),
            allow_retries=self.retryable,
        )


class StatementBlockedFailure(LgpdFailure):
    """The guard blocked the statement; it never reached the database."""


class ApprovalRequiredFailure(LgpdFailure):
    """The statement waits for a person's approval; ``request_id`` names the request."""

    @property
    def request_id(self) -> str | None:
        value = self.metadata.get("request_id")
        return None if value is None else str(getattr(value, "value", value))


class ApprovalDeniedFailure(ApprovalRequiredFailure):
    """A person denied the approval request for this statement."""


class ApprovalExpiredFailure(ApprovalRequiredFailure):
    """The approval request expired; a timeout never approves."""


class ApprovalDecisionFailure(LgpdFailure):
    """The decision could not be recorded (unknown approver, own request, already decided)."""


class PolicyFailure(LgpdFailure):
    """The policy file or the resource's configuration cannot be used."""


class MaskingFailure(LgpdFailure):
    """An output cannot be masked, so it is not stored."""


class StatementFailedFailure(LgpdFailure):
    """The database failed a statement the guard let through; a retry policy may retry it."""

    retryable = True


def approve_instructions(request_id: str) -> str:
    """How to approve a request from the Dagster Launchpad (and from the shell)."""
    return (
        f"Approve it from the Dagster UI: open the {APPROVE_JOB!r} job, Launchpad, with config\n"
        f"ops:\n  {DECIDE_OP}:\n    config:\n      request_id: {request_id}\n"
        "      decision: approve\n      reason: <why>\n      approver_token: <your approver token>\n"
        f"or run `lgpd-tasks approvals approve {request_id}`. "
        "The lgpd_approval_sensor then launches the job again."
    )


def refusal_metadata(err: LgpdError) -> dict[str, Any]:
    """What the UI shows beside a refusal: rule, scope, table, column, request; no values."""
    data: dict[str, Any] = {"error": type(err).__name__}
    if isinstance(err, StatementRefused):
        data["scope"] = err.scope
        first = err.reasons[0] if err.reasons else None
        data["rule"] = first.rule if first else ""
        data["table"] = (first.table if first else None) or ""
        data["column"] = (first.column if first else None) or ""
        data["reasons"] = dg.MetadataValue.json([r.to_dict() for r in err.reasons])
    if isinstance(err, ApprovalRequired):
        data["request_id"] = err.request_id
        data["fingerprint"] = err.fingerprint
    if isinstance(err, PolicyError):
        data["problems"] = dg.MetadataValue.json([str(p) for p in err.problems])
    if isinstance(err, StatementFailed):
        data["error_class"] = err.error_class
        data["sqlstate"] = err.sqlstate or ""
    return data


def to_failure(err: LgpdError) -> LgpdFailure:
    """The Dagster failure for a core refusal (audit outages are handled by the caller)."""
    metadata = refusal_metadata(err)
    cls: type[LgpdFailure]
    message = str(err)
    if isinstance(err, ApprovalDenied):
        cls = ApprovalDeniedFailure
    elif isinstance(err, ApprovalExpired):
        cls = ApprovalExpiredFailure
    elif isinstance(err, ApprovalRequired):
        cls = ApprovalRequiredFailure
        message = f"{err}\n\n{approve_instructions(err.request_id)}"
        metadata["how_to_approve"] = dg.MetadataValue.md(
            f"```\n{approve_instructions(err.request_id)}\n```"
        )
    elif isinstance(err, StatementBlocked):
        cls = StatementBlockedFailure
    elif isinstance(err, (PolicyError, AuditStoreUnusable, UsageError)):
        cls = PolicyFailure  # a policy or a URL that cannot be used: no retry mends it
    elif isinstance(err, MaskingError):
        cls = MaskingFailure
    elif isinstance(err, ApprovalError):
        cls = ApprovalDecisionFailure
    elif isinstance(err, StatementFailed):
        cls = StatementFailedFailure
    else:
        cls = LgpdFailure
    return cls(message, error=err, metadata=metadata)
