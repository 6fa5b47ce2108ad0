"""Approval requests and decisions: pending -> approved | denied | expired, every step audited."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, case, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from lgpd_tasks.approvals.values import admits, bind
from lgpd_tasks.audit.schema import approval_decisions, approval_requests
from lgpd_tasks.audit.store import AuditStore, NewEntry, isotime, utcnow
from lgpd_tasks.errors import ApprovalError, Reason
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy.model import ApprovalsSpec


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Approver:
    """Who decides: a name, whether a signed token verified it, and the token's issuer."""

    name: str
    verified: bool = False
    issuer: str | None = None
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class DecisionRecord:
    approver: str
    verified: bool
    issuer: str | None
    decision: str
    reason: str
    decided_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "approver": self.approver,
            "verified": self.verified,
            "issuer": self.issuer,
            "decision": self.decision,
            "reason": self.reason,
            "decided_at": self.decided_at,
        }


@dataclass(frozen=True)
class ApprovalRequest:
    """A statement waiting for (or given) a person's approval; holds no literal values."""

    id: str
    fingerprint: str
    pipeline: str
    task: str
    run_id: str
    scope: str
    purpose: str
    statement_kind: str
    normalized: str
    reasons: tuple[dict[str, Any], ...]
    requested_by: str
    requested_user: str | None
    requested_at: str
    expires_at: str
    status: Status
    min_approvers: int
    decided_at: str | None
    consumed_at: str | None
    consumed_by: str | None
    decisions: tuple[DecisionRecord, ...] = ()
    partition: str | None = None
    instance: str | None = None
    """The mapped task instance that asked (Airflow's map index, Dagster's mapping key)."""
    bound_values: str | None = field(default=None, repr=False)
    """Salted digest of the statement text and parameters asked for (:mod:`.values`)."""

    @property
    def usable(self) -> bool:
        """Approved, not yet used by a run of its statement, and not past its expiry."""
        return (
            self.status is Status.APPROVED
            and self.consumed_at is None
            and self.expires_at > isotime(utcnow())
        )

    @property
    def due(self) -> bool:
        """Past its expiry while still waiting for a decision or for its use."""
        waiting = self.status is Status.PENDING or (
            self.status is Status.APPROVED and self.consumed_at is None
        )
        return waiting and self.expires_at <= isotime(utcnow())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": str(self.status),
            "fingerprint": self.fingerprint,
            "pipeline": self.pipeline,
            "task": self.task,
            "run_id": self.run_id,
            "partition": self.partition,
            "instance": self.instance,
            "values_bound": self.bound_values is not None,
            "scope": self.scope,
            "purpose": self.purpose,
            "statement_kind": self.statement_kind,
            "normalized": self.normalized,
            "reasons": list(self.reasons),
            "requested_by": self.requested_by,
            "requested_user": self.requested_user,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
            "min_approvers": self.min_approvers,
            "decided_at": self.decided_at,
            "consumed_at": self.consumed_at,
            "consumed_by": self.consumed_by,
            "decisions": [d.to_dict() for d in self.decisions],
        }


@dataclass(frozen=True)
class NewRequest:
    """What the guard knows when a statement needs approval."""

    fingerprint: str
    scope: str
    purpose: str
    legal_basis: str
    statement_kind: str
    normalized: str
    reasons: Sequence[Reason]
    ttl: timedelta
    min_approvers: int = 1
    values: bytes | None = None
    """:func:`~lgpd_tasks.approvals.values.statement_values` of the statement asked for;
    the request then admits a statement with these values only."""


#: Requests of one statement and task run compared with a run's values (each comparison
#: is one scrypt): approved and unused ones first, then pending ones, each newest first, so
#: an approval is still found after runs with other values asked for theirs.
_VALUE_CANDIDATES = 16


def _candidates_first(values: bytes | None) -> list[Any]:
    if values is None:
        return []
    c = approval_requests.c
    usable = and_(c.status == Status.APPROVED.value, c.consumed_at.is_(None))
    return [case((usable, 0), (c.status == Status.PENDING.value, 1), else_=2)]


class ApprovalStore:
    """Requests and decisions in the audit database; each change is also an audit record."""

    def __init__(self, audit: AuditStore, rules: ApprovalsSpec | None = None) -> None:
        self.audit = audit
        self.engine = audit.engine
        self.rules = rules or ApprovalsSpec()

    @classmethod
    def from_url(cls, url: str, rules: ApprovalsSpec | None = None) -> ApprovalStore:
        return cls(AuditStore.from_url(url), rules)

    # -- requests -------------------------------------------------------------------------

    def request(
        self, identity: TaskIdentity, new: NewRequest, *, none_pending: bool = False
    ) -> ApprovalRequest:
        """Open a pending request for this statement and task, or return the open one.

        Requests are deduplicated by fingerprint + pipeline + task + run + partition + mapped
        instance; the request records the identity's partition and mapped instance, and only
        that partition's and that instance's run finds it. ``none_pending`` says the caller
        has just looked (:meth:`find`, with the same values) and found no pending request:
        the lookup, up to 16 scrypt comparisons, is not made twice.
        """
        self.expire_due()
        if not none_pending:
            existing = self.find(new.fingerprint, identity, new.values)
            if existing is not None and existing.status is Status.PENDING:
                return existing
        now = utcnow()
        request_id = f"apr_{secrets.token_hex(8)}"
        row = {
            "id": request_id,
            "fingerprint": new.fingerprint,
            "pipeline": identity.pipeline,
            "task": identity.task,
            "run_id": identity.run_id,
            "partition_key": identity.partition,
            "map_key": identity.instance,
            "bound_values": None if new.values is None else bind(new.values),
            "scope": new.scope,
            "purpose": new.purpose,
            "statement_kind": new.statement_kind,
            "normalized": new.normalized,
            "reasons": json.dumps([r.to_dict() for r in new.reasons]),
            "requested_by": identity.principal,
            "requested_user": identity.user,
            "requested_at": isotime(now),
            "expires_at": isotime(now + new.ttl),
            "status": Status.PENDING.value,
            "min_approvers": new.min_approvers,
        }
        entry = NewEntry(
            kind="approval",
            identity=identity,
            scope=new.scope,
            purpose=new.purpose,
            legal_basis=new.legal_basis,
            decision="requested",
            fingerprint=new.fingerprint,
            details={
                "request_id": request_id,
                "event": "requested",
                "partition": identity.partition,
                "instance": identity.instance,
                "statement_kind": new.statement_kind,
                "normalized": new.normalized,
                "reasons": [r.to_dict() for r in new.reasons],
                "expires_at": row["expires_at"],
                "min_approvers": new.min_approvers,
            },
        )
        self._write(lambda conn: conn.execute(approval_requests.insert().values(**row)), entry)
        created = self.get(request_id)
        return created

    def find(
        self, fingerprint: str, identity: TaskIdentity, values: bytes | None = None
    ) -> ApprovalRequest | None:
        """The newest request for this statement, pipeline, task, run, partition and mapped
        instance, if any; with ``values``, the newest of those made for these values
        (:func:`~lgpd_tasks.approvals.values.statement_values`)."""
        query = (
            select(approval_requests)
            .where(
                and_(
                    approval_requests.c.fingerprint == fingerprint,
                    approval_requests.c.pipeline == identity.pipeline,
                    approval_requests.c.task == identity.task,
                    approval_requests.c.run_id == identity.run_id,
                    (
                        approval_requests.c.partition_key.is_(None)
                        if identity.partition is None
                        else approval_requests.c.partition_key == identity.partition
                    ),
                    (
                        approval_requests.c.map_key.is_(None)
                        if identity.instance is None
                        else approval_requests.c.map_key == identity.instance
                    ),
                )
            )
            .order_by(*_candidates_first(values), approval_requests.c.requested_at.desc())
            .limit(1 if values is None else _VALUE_CANDIDATES)
        )
        for row in self._select(query):
            if values is None or admits(row.get("bound_values"), values):
                # a pending request past its TTL is expired here, so nobody is told it
                # still waits
                return self.get(str(row["id"]))
        return None

    def get(self, request_id: str) -> ApprovalRequest:
        rows = self._select(select(approval_requests).where(approval_requests.c.id == request_id))
        if not rows:
            raise ApprovalError(f"no approval request {request_id!r}")
        request = self._with_decisions(rows[0])
        if request.due:
            self.expire_due()
            return self.get(request_id)
        return request

    def list_requests(
        self,
        *,
        status: Status | str | None = None,
        pipeline: str | None = None,
        limit: int = 200,
    ) -> list[ApprovalRequest]:
        self.expire_due()
        query = select(approval_requests)
        if status is not None:
            query = query.where(approval_requests.c.status == str(Status(status)))
        if pipeline is not None:
            query = query.where(approval_requests.c.pipeline == pipeline)
        query = query.order_by(approval_requests.c.requested_at.desc()).limit(limit)
        return [self._with_decisions(r) for r in self._select(query)]

    # -- decisions ------------------------------------------------------------------------

    def approve(self, request_id: str, approver: Approver, reason: str = "") -> ApprovalRequest:
        return self._decide(request_id, approver, "approve", reason)

    def deny(self, request_id: str, approver: Approver, reason: str) -> ApprovalRequest:
        if not reason.strip():
            raise ApprovalError("a denial needs a reason")
        return self._decide(request_id, approver, "deny", reason)

    def _decide(
        self, request_id: str, approver: Approver, decision: str, reason: str
    ) -> ApprovalRequest:
        request = self.get(request_id)
        if request.status is not Status.PENDING:
            raise ApprovalError(f"approval request {request_id} is already {request.status}")
        if _same_person(approver.name, request):
            raise ApprovalError(
                f"{approver.name!r} asked for approval request {request_id} and cannot decide it"
            )
        if approver.name.startswith(GROUP_PREFIX):
            raise ApprovalError(
                f"{approver.name!r} is not an approver name: 'group:' entries of "
                "approvals.approvers name a verified token's groups"
            )
        allowed = self.rules.approvers
        if allowed and not approver_allowed(approver, allowed):
            raise ApprovalError(
                f"{approver.name!r} is not among the policy's approvers "
                f"(approvals.approvers: {', '.join(allowed)}; a 'group:' entry needs a "
                "verified token with that group)"
            )
        if self.rules.require_verified_identity and not approver.verified:
            raise ApprovalError(
                f"the policy requires a verified approver identity and {approver.name!r} "
                "is not verified (approvals.require_verified_identity)"
            )
        if any(d.approver == approver.name for d in request.decisions):
            raise ApprovalError(f"{approver.name!r} already decided approval request {request_id}")
        now = isotime(utcnow())
        approvals = 1 + sum(1 for d in request.decisions if d.decision == "approve")
        if decision == "deny":
            new_status: Status = Status.DENIED
        elif approvals >= request.min_approvers:
            new_status = Status.APPROVED
        else:
            new_status = Status.PENDING
        identity = TaskIdentity(
            orchestrator="approver",
            pipeline=request.pipeline,
            task=request.task,
            run_id=request.run_id,
            user=approver.name,
        )
        entry = NewEntry(
            kind="approval",
            identity=identity,
            scope=request.scope,
            purpose=request.purpose,
            decision=new_status.value if new_status is not Status.PENDING else decision,
            fingerprint=request.fingerprint,
            details={
                "request_id": request_id,
                "event": decision,
                "approver": approver.name,
                "verified": approver.verified,
                "issuer": approver.issuer,
                "reason": reason,
                "status": new_status.value,
                "approvals": approvals if decision == "approve" else approvals - 1,
                "min_approvers": request.min_approvers,
            },
        )

        def change(conn: Connection) -> None:
            conn.execute(
                approval_decisions.insert().values(
                    request_id=request_id,
                    approver=approver.name,
                    verified=approver.verified,
                    issuer=approver.issuer,
                    decision=decision,
                    reason=reason,
                    decided_at=now,
                )
            )
            if new_status is not Status.PENDING:
                done = conn.execute(
                    update(approval_requests)
                    .where(
                        approval_requests.c.id == request_id,
                        approval_requests.c.status == Status.PENDING.value,
                    )
                    .values(status=new_status.value, decided_at=now)
                )
                if done.rowcount != 1:
                    raise ApprovalError(f"approval request {request_id} changed while deciding")

        try:
            self._write(change, entry)
        except IntegrityError:
            raise ApprovalError(
                f"{approver.name!r} already decided approval request {request_id}"
            ) from None
        return self.get(request_id)

    def consume(self, request_id: str, identity: TaskIdentity) -> bool:
        """Mark an approved request as used; ``False`` if it was not approved and unused."""
        now = isotime(utcnow())

        def change(conn: Connection) -> None:
            done = conn.execute(
                update(approval_requests)
                .where(
                    approval_requests.c.id == request_id,
                    approval_requests.c.status == Status.APPROVED.value,
                    approval_requests.c.consumed_at.is_(None),
                    approval_requests.c.expires_at > now,
                )
                .values(consumed_at=now, consumed_by=identity.principal)
            )
            if done.rowcount != 1:
                raise _NotConsumed

        try:
            with self.engine.begin() as conn:
                change(conn)
        except _NotConsumed:
            return False
        except SQLAlchemyError as err:
            raise self.audit._unavailable("cannot record the approval's use", err) from None
        return True

    def release(self, request_id: str, identity: TaskIdentity) -> None:
        """Give back an approval ``identity`` consumed for a statement that did not run."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(approval_requests)
                    .where(
                        approval_requests.c.id == request_id,
                        approval_requests.c.consumed_by == identity.principal,
                    )
                    .values(consumed_at=None, consumed_by=None)
                )
        except SQLAlchemyError as err:
            raise self.audit._unavailable("cannot give back the approval", err) from None

    def expire_due(self) -> list[str]:
        """Expire requests past their TTL (recorded); a timeout never approves.

        A pending request expires undecided; an approved one that no run used by then
        expires too, so an old approval cannot admit a statement later.
        """
        now = isotime(utcnow())
        unused_approval = and_(
            approval_requests.c.status == Status.APPROVED.value,
            approval_requests.c.consumed_at.is_(None),
        )
        due = self._select(
            select(approval_requests).where(
                or_(approval_requests.c.status == Status.PENDING.value, unused_approval),
                approval_requests.c.expires_at <= now,
            )
        )
        expired: list[str] = []
        for row in due:
            request_id = str(row["id"])
            was = str(row["status"])
            still = (
                approval_requests.c.status == Status.PENDING.value
                if was == Status.PENDING.value
                else unused_approval
            )
            identity = TaskIdentity(
                orchestrator="lgpd-tasks",
                pipeline=str(row["pipeline"]),
                task=str(row["task"]),
                run_id=str(row["run_id"]),
            )
            entry = NewEntry(
                kind="approval",
                identity=identity,
                scope=str(row["scope"]),
                purpose=str(row["purpose"]),
                decision=Status.EXPIRED.value,
                fingerprint=str(row["fingerprint"]),
                details={
                    "request_id": request_id,
                    "event": "expired",
                    "expired_at": now,
                    "expires_at": str(row["expires_at"]),
                    # "approved": the approval was given but no run used it in time
                    "was": was,
                },
            )

            def change(conn: Connection, rid: str = request_id, still: Any = still) -> None:
                done = conn.execute(
                    update(approval_requests)
                    .where(approval_requests.c.id == rid, still)
                    .values(status=Status.EXPIRED.value, decided_at=now)
                )
                if done.rowcount != 1:
                    raise _NotConsumed  # decided, used or expired by someone else first

            try:
                self._write(change, entry)
                expired.append(request_id)
            except _NotConsumed:
                continue
        return expired

    # -- plumbing -------------------------------------------------------------------------

    def _write(self, change: Any, entry: NewEntry) -> None:
        """Apply a change and its audit record in one transaction: both or neither."""
        self.audit.ensure_ready()
        try:
            with self.engine.begin() as conn:
                change(conn)
                self.audit._append_locked(conn, [entry])
        except (ApprovalError, _NotConsumed, IntegrityError):
            raise
        except SQLAlchemyError as err:
            raise self.audit._unavailable("cannot record the approval", err) from None

    def _select(self, query: Any) -> list[dict[str, Any]]:
        self.audit.ensure_ready()
        try:
            with self.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(query)]
        except SQLAlchemyError as err:
            raise self.audit._unavailable("cannot be read", err) from None

    def _with_decisions(self, row: dict[str, Any]) -> ApprovalRequest:
        decisions = self._select(
            select(approval_decisions)
            .where(approval_decisions.c.request_id == row["id"])
            .order_by(approval_decisions.c.id)
        )
        return ApprovalRequest(
            id=row["id"],
            fingerprint=row["fingerprint"],
            pipeline=row["pipeline"],
            task=row["task"],
            run_id=row["run_id"],
            scope=row["scope"],
            purpose=row["purpose"],
            statement_kind=row["statement_kind"],
            normalized=row["normalized"],
            reasons=tuple(json.loads(row["reasons"])),
            requested_by=row["requested_by"],
            requested_user=row["requested_user"],
            requested_at=row["requested_at"],
            expires_at=row["expires_at"],
            status=Status(row["status"]),
            min_approvers=int(row["min_approvers"]),
            decided_at=row["decided_at"],
            consumed_at=row["consumed_at"],
            consumed_by=row["consumed_by"],
            partition=row.get("partition_key"),
            instance=row.get("map_key"),
            bound_values=row.get("bound_values"),
            decisions=tuple(
                DecisionRecord(
                    approver=d["approver"],
                    verified=bool(d["verified"]),
                    issuer=d["issuer"],
                    decision=d["decision"],
                    reason=d["reason"],
                    decided_at=d["decided_at"],
                )
                for d in decisions
            ),
        )


class _NotConsumed(Exception):
    pass


#: How ``approvals.approvers`` names a group: ``group:NAME`` (a verified token's groups).
GROUP_PREFIX = "group:"


def approver_allowed(approver: Approver, allowed: Sequence[str]) -> bool:
    """Whether ``allowed`` (``approvals.approvers``) lets ``approver`` decide.

    A plain entry matches the approver's name; a ``group:NAME`` entry matches only the
    groups of a *verified* token, never a name, so typing ``group:dpo`` as one's name
    does not make one the DPO.

    >>> approver_allowed(Approver("group:dpo"), ["group:dpo"])
    False
    >>> approver_allowed(Approver("ana", verified=True, groups=("dpo",)), ["group:dpo"])
    True
    >>> approver_allowed(Approver("ana", groups=("dpo",)), ["group:dpo"])
    False
    """
    names = {a for a in allowed if not a.startswith(GROUP_PREFIX)}
    groups = {a[len(GROUP_PREFIX) :] for a in allowed if a.startswith(GROUP_PREFIX)}
    if approver.name in names and not approver.name.startswith(GROUP_PREFIX):
        return True
    return approver.verified and bool(groups & set(approver.groups))


def _same_person(approver: str, request: ApprovalRequest) -> bool:
    """The identity that asked may not decide (compared with and without a ``cli:`` prefix)."""
    asked = {request.requested_by, request.requested_user} - {None}
    return bool(asked & {approver, f"cli:{approver}"})
