"""Approval requests: the state machine, four eyes, self-approval, expiry, audit trail."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from lgpd_tasks.approvals import ApprovalStore, Approver, NewRequest, Status
from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.errors import ApprovalError, Reason
from lgpd_tasks.identity import TaskIdentity

ASKER = TaskIdentity("airflow", "contractor", "purge", run_id="manual__1", user="maria")


def _new(ttl: timedelta = timedelta(hours=1), min_approvers: int = 1) -> NewRequest:
    return NewRequest(
        fingerprint="f" * 64,
        scope="contractor.purge",
        purpose="contractor_report",
        legal_basis="legitimate_interest",
        statement_kind="delete",
        normalized="DELETE FROM staging.orders_raw",
        reasons=[Reason("unbounded_write", "approve", "DELETE without WHERE")],
        ttl=ttl,
        min_approvers=min_approvers,
    )


@pytest.fixture
def approvals(tmp_path: Path) -> ApprovalStore:
    return ApprovalStore(AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db"))


def test_request_is_pending_and_deduplicated(approvals: ApprovalStore) -> None:
    first = approvals.request(ASKER, _new())
    again = approvals.request(ASKER, _new())
    assert first.status is Status.PENDING
    assert again.id == first.id
    assert first.requested_by == "airflow:contractor.purge"
    assert [r.id for r in approvals.list_requests(status="pending")] == [first.id]


def test_approval_records_who_when_and_why(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new())
    done = approvals.approve(request.id, Approver("joao"), "checked the staging table")
    assert done.status is Status.APPROVED
    assert done.usable
    (decision,) = done.decisions
    assert (decision.approver, decision.reason, decision.verified) == (
        "joao",
        "checked the staging table",
        False,
    )
    events = [e.details["event"] for e in approvals.audit.entries(EntryFilter(kind="approval"))]
    assert events == ["requested", "approve"]
    assert approvals.audit.verify().ok


def test_requester_cannot_approve_own_request(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new())
    with pytest.raises(ApprovalError, match="asked for approval request"):
        approvals.approve(request.id, Approver("maria"))
    with pytest.raises(ApprovalError, match="cannot decide"):
        approvals.approve(request.id, Approver("airflow:contractor.purge"))


def test_denial_needs_a_reason_and_is_final(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new())
    with pytest.raises(ApprovalError, match="needs a reason"):
        approvals.deny(request.id, Approver("joao"), "  ")
    denied = approvals.deny(request.id, Approver("joao"), "purge window is closed")
    assert denied.status is Status.DENIED
    with pytest.raises(ApprovalError, match="already denied"):
        approvals.approve(request.id, Approver("ana"))


def test_four_eyes_needs_two_different_approvers(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new(min_approvers=2))
    once = approvals.approve(request.id, Approver("joao"))
    assert once.status is Status.PENDING
    with pytest.raises(ApprovalError, match="already decided"):
        approvals.approve(request.id, Approver("joao"))
    twice = approvals.approve(request.id, Approver("ana"))
    assert twice.status is Status.APPROVED
    assert [d.approver for d in twice.decisions] == ["joao", "ana"]


def test_timeout_never_approves(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new(ttl=timedelta(milliseconds=200)))
    time.sleep(0.3)
    assert approvals.get(request.id).status is Status.EXPIRED
    with pytest.raises(ApprovalError, match="already expired"):
        approvals.approve(request.id, Approver("joao"))
    events = [e.details["event"] for e in approvals.audit.entries(EntryFilter(kind="approval"))]
    assert events == ["requested", "expired"]


def test_an_approval_is_used_once(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new())
    approvals.approve(request.id, Approver("joao"))
    assert approvals.consume(request.id, ASKER) is True
    assert approvals.consume(request.id, ASKER) is False
    assert not approvals.get(request.id).usable


def test_unknown_request_is_an_error(approvals: ApprovalStore) -> None:
    with pytest.raises(ApprovalError, match="no approval request 'apr_nope'"):
        approvals.get("apr_nope")


def test_policy_approvers_list_is_enforced(tmp_path: Path) -> None:
    from lgpd_tasks.policy.model import ApprovalsSpec

    store = ApprovalStore(
        AuditStore.from_url(f"sqlite:///{tmp_path}/a.db"),
        ApprovalsSpec(approvers=["dpo", "group:privacy"]),
    )
    request = store.request(ASKER, _new())
    with pytest.raises(ApprovalError, match="not among the policy's approvers"):
        store.approve(request.id, Approver("joao"))
    assert store.approve(request.id, Approver("ana", groups=("privacy",))).status is Status.APPROVED


def test_unverified_approver_refused_when_policy_requires_verification(tmp_path: Path) -> None:
    from lgpd_tasks.policy.model import ApprovalsSpec

    store = ApprovalStore(
        AuditStore.from_url(f"sqlite:///{tmp_path}/a.db"),
        ApprovalsSpec(require_verified_identity=True),
    )
    request = store.request(ASKER, _new())
    with pytest.raises(ApprovalError, match="verified approver identity"):
        store.approve(request.id, Approver("joao"))
    done = store.approve(request.id, Approver("joao", verified=True, issuer="https://idp"))
    assert done.decisions[0].verified
