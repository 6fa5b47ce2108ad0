"""Approval requests for risky statements: their store and state machine."""

from lgpd_tasks.approvals.store import (
    ApprovalRequest,
    ApprovalStore,
    Approver,
    DecisionRecord,
    NewRequest,
    Status,
)

__all__ = [
    "ApprovalRequest",
    "ApprovalStore",
    "Approver",
    "DecisionRecord",
    "NewRequest",
    "Status",
]
