"""Who is approving: a verified OIDC identity, or a claimed name where the policy allows it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from lgpd_tasks.approvals.store import GROUP_PREFIX, Approver
from lgpd_tasks.credentials.oidc import ApproverVerifier
from lgpd_tasks.credentials.tokens import ReplayCache
from lgpd_tasks.errors import ApprovalError, TokenReplayed
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy.model import ApprovalsSpec


def verifier_from_settings(settings: ApprovalsSpec) -> ApproverVerifier:
    """The approver-token verifier the policy's ``approvals.oidc`` section describes."""
    oidc = settings.oidc
    if oidc is None:
        raise ApprovalError(
            "an approver token needs the policy's approvals.oidc section "
            "(issuer, audience, jwks) to say which identity provider to trust"
        )
    return ApproverVerifier(
        jwks=oidc.jwks,
        issuer=oidc.issuer,
        audience=oidc.audience,
        groups_claim=oidc.groups_claim,
        algorithms=oidc.algorithms,
    )


def used_token_key(token: str) -> str:
    """What a single-use cache keeps of an approver token: a digest, never the token.

    ``single_use.forget(used_token_key(token))`` gives the token back when the decision it
    was spent on did not happen (the store was down, the request id was wrong).
    """
    return "approver:" + hashlib.sha256(token.encode()).hexdigest()


def resolve_approver(
    settings: ApprovalsSpec,
    *,
    token: str | None = None,
    name: str | None = None,
    verifier: ApproverVerifier | None = None,
    single_use: ReplayCache | None = None,
) -> Approver:
    """The :class:`Approver` to record for a decision.

    With ``token``, the identity provider's verified subject, issuer and groups (a
    :class:`~lgpd_tasks.errors.TokenError` when the token fails). Without one, the claimed
    ``name`` marked unverified, unless ``approvals.require_verified_identity`` refuses it
    here already; a name starting with ``group:`` is refused. The store then applies
    ``approvals.approvers`` (a name, or ``group:NAME`` which only a verified token's groups
    can satisfy).

    With ``single_use``, a token counts for one decision only (a
    :class:`~lgpd_tasks.errors.TokenReplayed` the second time): where the token ends up
    visible to others, as in a Dagster run's config, nobody can reuse it to decide in the
    approver's name. The cache keeps a digest of the token, never the token.

    >>> from lgpd_tasks.policy.model import ApprovalsSpec
    >>> resolve_approver(ApprovalsSpec(), name="joao")
    Approver(name='joao', verified=False, issuer=None, groups=())
    >>> resolve_approver(ApprovalsSpec(require_verified_identity=True), name="joao")
    Traceback (most recent call last):
    ...
    lgpd_tasks.errors.ApprovalError: the policy requires a verified approver identity (approvals.require_verified_identity: true); approve with an identity-provider token
    """
    if token:
        if name:
            raise ApprovalError("give either a token or a name, not both: the token names you")
        checked = (verifier or verifier_from_settings(settings)).verify(token)
        if single_use is not None:
            expires = checked.expires_at or datetime.now(UTC) + timedelta(days=1)
            if not single_use.remember(used_token_key(token), expires):
                raise TokenReplayed(
                    "this approver token was already used for a decision; a token that was "
                    "shown in a run's config cannot decide again: sign in for a fresh one"
                )
        return Approver(
            name=checked.subject,
            verified=True,
            issuer=checked.issuer,
            groups=tuple(sorted(checked.groups)),
        )
    if settings.require_verified_identity:
        raise ApprovalError(
            "the policy requires a verified approver identity "
            "(approvals.require_verified_identity: true); approve with an identity-provider token"
        )
    identity = TaskIdentity.for_cli(name)
    claimed = identity.user or identity.task
    if claimed.startswith(GROUP_PREFIX):
        raise ApprovalError(
            f"{claimed!r} is not an approver name: 'group:' entries of approvals.approvers "
            "are matched against a verified token's groups, never against a claimed name"
        )
    return Approver(name=claimed, verified=False)
