"""ApprovalTrigger: the deferrable gate's wait, polling the approvals store in the triggerer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from lgpd_tasks.approvals import ApprovalRequest, ApprovalStore, Status
from lgpd_tasks.audit import AuditStore
from lgpd_tasks.errors import AuditStoreUnusable
from lgpd_tasks.masking import Masker


def verdict(requests: Sequence[ApprovalRequest]) -> dict[str, Any] | None:
    """The gate's outcome once every request is approved or one is denied or expired.

    ``None`` while any request is still pending. The message names the request, who
    decided and their reason (PII in a reason is scrubbed); a timeout never approves.
    """
    for request in requests:
        if request.status is Status.DENIED:
            denial = next((d for d in request.decisions if d.decision == "deny"), None)
            who = f" by {denial.approver}" if denial else ""
            why = f": {Masker().mask_text(denial.reason)}" if denial and denial.reason else ""
            return {
                "status": "denied",
                "request_id": request.id,
                "message": f"approval request {request.id} for task {request.task} "
                f"was denied{who}{why}",
            }
        if request.status is Status.EXPIRED:
            approvals = sum(1 for d in request.decisions if d.decision == "approve")
            how = (
                "before a run used its approval"
                if approvals >= request.min_approvers
                else "without a decision (a timeout never approves)"
            )
            return {
                "status": "expired",
                "request_id": request.id,
                "message": f"approval request {request.id} for task {request.task} expired at "
                f"{request.expires_at} {how}",
            }
    if all(r.status is Status.APPROVED for r in requests):
        return {
            "status": "approved",
            "request_ids": [r.id for r in requests],
            "message": "approved: " + ", ".join(r.id for r in requests),
        }
    return None


class ApprovalTrigger(BaseTrigger):
    """Fires when the approval requests are all approved, or one is denied or expires."""

    def __init__(self, request_ids: Sequence[str], audit_url: str, poll_interval: float = 5.0):
        super().__init__()  # type: ignore[no-untyped-call]
        self.request_ids = list(request_ids)
        self.audit_url = audit_url
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_ids": self.request_ids,
                "audit_url": self.audit_url,
                "poll_interval": self.poll_interval,
            },
        )

    def _read(self) -> list[ApprovalRequest]:
        # the sensor opened its requests there: a store that does not exist is a wrong URL,
        # never one to create and wait on
        store = ApprovalStore(AuditStore.open_existing(self.audit_url))
        return [store.get(request_id) for request_id in self.request_ids]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                requests = await asyncio.to_thread(self._read)
            except AuditStoreUnusable as err:  # a wrong URL: waiting cannot mend it
                yield TriggerEvent(  # type: ignore[no-untyped-call]
                    {"status": "error", "message": str(err), "request_ids": self.request_ids}
                )
                return
            except Exception as err:  # the store is down: keep waiting, never approve
                self.log.warning("approvals store unreadable, polling again: %s", err)
            else:
                outcome = verdict(requests)
                if outcome is not None:
                    yield TriggerEvent(outcome)  # type: ignore[no-untyped-call]
                    return
            await asyncio.sleep(self.poll_interval)
