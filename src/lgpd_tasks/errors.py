"""The exceptions lgpd-tasks raises, under one root.

    LgpdError
    ├── PolicyError                  the policy file is broken (file, path, what was expected)
    │   ├── UnknownScope             a task names a scope the policy does not define
    │   └── ScopeWidening            code tried to grant itself more than its scope
    ├── StatementRefused             the guard did not let a statement run
    │   ├── StatementBlocked         a rule blocks it (DDL, side-effect function, unparsable...)
    │   │   └── ScopeViolation       it touches a table or column outside the scope
    │   └── ApprovalRequired         it waits for a person's approval (carries the request id)
    │       ├── ApprovalDenied       a person denied it
    │       └── ApprovalExpired      nobody decided in time; a timeout never approves
    ├── ApprovalError                an approval cannot be given (own request, already decided...)
    ├── StatementFailed              the database refused or failed a guarded statement (scrubbed)
    ├── AuditUnavailable             the audit record cannot be written, so nothing runs
    │   └── AuditStoreUnusable       a usage error: bad URL, in memory, missing for a reader
    ├── AuditChainBroken             `audit verify` found an altered, removed or reordered record
    ├── EvidenceError                export, purge or a report cannot be done (target, range...)
    ├── MaskingError                 masking cannot be done as asked (unknown strategy, no key...)
    │   └── LabelsWouldMerge         masked keys or column labels would collide and lose data
    ├── CredentialError              a scoped credential cannot be issued or revoked
    └── TokenError                   a task or approver token fails verification (malformed...)
        ├── TokenExpired             its ``exp`` has passed
        ├── TokenNotYetValid         its ``nbf`` (or ``iat``) is in the future
        ├── TokenAudienceInvalid     its ``aud`` is not this verifier's audience
        ├── TokenIssuerInvalid       its ``iss`` is not the expected issuer
        ├── TokenAlgorithmRejected   ``alg: none``, an algorithm not configured, or confusion
        ├── TokenSignatureInvalid    the signature does not match (tampered header or payload)
        ├── TokenKeyUnknown          no configured key has the token's ``kid``
        └── TokenReplayed            its ``jti`` was already used

Messages name the scope, the table or column and the rule, never a personal value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class LgpdError(Exception):
    """Root of every error lgpd-tasks raises on purpose."""


class UsageError(LgpdError):
    """A command or argument that cannot work as given; the command line exits 2 for it."""


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong in a policy file: where (file and path) and what was expected."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class PolicyError(LgpdError):
    """The policy file cannot be used; ``problems`` lists every place that is wrong."""

    def __init__(self, problems: Sequence[PolicyProblem] | str) -> None:
        if isinstance(problems, str):
            problems = [PolicyProblem(file="<policy>", path="", message=problems)]
        self.problems: tuple[PolicyProblem, ...] = tuple(problems)
        lines = [str(p) for p in self.problems]
        super().__init__(lines[0] if len(lines) == 1 else "\n".join(["invalid policy:", *lines]))


class UnknownScope(PolicyError):
    """A task named a scope that the policy does not define."""

    def __init__(self, scope: str, file: str, known: Sequence[str]) -> None:
        self.scope = scope
        hint = ", ".join(sorted(known)) or "none"
        super().__init__(
            [PolicyProblem(file, f"scopes.{scope}", f"unknown scope {scope!r} (defined: {hint})")]
        )


class ScopeWidening(PolicyError):
    """Code tried to narrow a scope to something the scope does not grant."""

    def __init__(self, scope: str, what: str) -> None:
        self.scope = scope
        super().__init__(
            [PolicyProblem("<code>", f"scopes.{scope}", f"cannot widen the scope: {what}")]
        )


@dataclass(frozen=True)
class Reason:
    """Why the guard decided what it did: one rule firing on one table or column."""

    rule: str
    action: str
    message: str
    table: str | None = None
    column: str | None = None
    statement: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "action": self.action,
            "message": self.message,
            "table": self.table,
            "column": self.column,
            "statement": self.statement,
        }


class StatementRefused(LgpdError):
    """The guard did not let the statement run."""

    def __init__(self, message: str, *, scope: str, reasons: Sequence[Reason] = ()) -> None:
        self.scope = scope
        self.reasons: tuple[Reason, ...] = tuple(reasons)
        super().__init__(message)

    @property
    def rule(self) -> str | None:
        return self.reasons[0].rule if self.reasons else None


class StatementBlocked(StatementRefused):
    """A guard rule blocks the statement; it never reaches the database."""


class ScopeViolation(StatementBlocked):
    """The statement touches a table or column that the scope does not grant."""


class ApprovalRequired(StatementRefused):
    """The statement needs a person's approval; ``request_id`` names the pending request."""

    def __init__(
        self,
        message: str,
        *,
        scope: str,
        request_id: str,
        fingerprint: str,
        reasons: Sequence[Reason] = (),
    ) -> None:
        self.request_id = request_id
        self.fingerprint = fingerprint
        super().__init__(message, scope=scope, reasons=reasons)


class ApprovalDenied(ApprovalRequired):
    """A person denied the approval request for this statement."""


class ApprovalExpired(ApprovalRequired):
    """The approval request expired without a decision; a timeout never approves."""


class ApprovalError(LgpdError):
    """An approval decision cannot be recorded (unknown request, own request, decided...)."""


class StatementFailed(LgpdError):
    """The database failed a statement the guard let through, running it or fetching its rows.

    The driver's message is scrubbed of personal data (a unique-key violation's detail
    quotes the value, a trigger's message may quote the row); ``error_class`` and
    ``sqlstate`` say what kind of failure it was.
    """

    def __init__(self, message: str, *, error_class: str, sqlstate: str | None = None) -> None:
        self.error_class = error_class
        self.sqlstate = sqlstate
        super().__init__(message)


class AuditUnavailable(LgpdError):
    """The audit store cannot record; statements do not run without their record."""


class AuditStoreUnusable(AuditUnavailable):
    """The URL names no audit store lgpd-tasks will use: a usage error, not an outage.

    A malformed URL (a port that is not a number) or an unsupported database (``mysql://``)
    is refused with it, for the audit store and the target database alike. An in-memory SQLite database would lose every record with the process; a command that
    only reads or maintains the audit refuses a store that does not exist yet rather than
    creating an empty one (a mistyped path would otherwise verify as an intact chain).
    """


@dataclass(frozen=True)
class ChainBreak:
    """The first record at which the audit hash chain does not hold."""

    seq: int
    record_id: str
    problem: str


class AuditChainBroken(LgpdError):
    """The audit chain was altered, had a record removed, or was reordered."""

    def __init__(self, breaks: Sequence[ChainBreak]) -> None:
        self.breaks = tuple(breaks)
        first = self.breaks[0]
        super().__init__(
            f"audit chain broken at record #{first.seq} ({first.record_id}): {first.problem}"
        )


class EvidenceError(LgpdError):
    """Evidence cannot be produced as asked: an export target, a purge, a report."""


class EvidenceTargetUnusable(EvidenceError, UsageError):
    """An export target URL that names no place lgpd-tasks can write to (exit 2)."""


class MaskingError(LgpdError):
    """Masking cannot be done as asked."""


class LabelsWouldMerge(MaskingError):
    """Keys or column labels hold personal data, and masking them would merge two of them."""


class CredentialError(LgpdError):
    """A scoped credential cannot be issued, used or revoked."""


class TokenError(LgpdError):
    """A signed task or approver token failed verification."""


class TokenExpired(TokenError):
    """The token's ``exp`` has passed."""


class TokenNotYetValid(TokenError):
    """The token's ``nbf`` (or ``iat``) lies in the future."""


class TokenAudienceInvalid(TokenError):
    """The token was issued for another audience."""


class TokenIssuerInvalid(TokenError):
    """The token was issued by an issuer this verifier does not trust."""


class TokenAlgorithmRejected(TokenError):
    """The token's algorithm is ``none``, not configured, or does not match its key."""


class TokenSignatureInvalid(TokenError):
    """The token's signature does not verify: the header or payload was altered."""


class TokenKeyUnknown(TokenError):
    """No configured key carries the token's ``kid`` (rotated out, or never trusted)."""


class TokenReplayed(TokenError):
    """The token's ``jti`` was already presented once."""


class ReplayCacheUnavailable(TokenError):
    """The table of used token ids cannot be read or written: no token is accepted meanwhile."""
