"""Dagster integration for lgpd-tasks: guarded database resource, masking IO manager, approvals.

.. code-block:: python

    from lgpd_tasks_dagster import GuardedDatabaseResource, build_lgpd_definitions

    defs = build_lgpd_definitions(
        Definitions(assets=[...], jobs=[...]),
        lgpd=GuardedDatabaseResource(
            policy_file="policy.yaml", database_url=EnvVar("DATABASE_URL"),
            audit_url=EnvVar("LGPD_AUDIT_URL"), approvers=["maria"],
        ),
    )
"""

from lgpd_tasks_dagster.approvals import (
    ApprovalDecision,
    ApprovalDecisionConfig,
    build_approval_sensor,
    lgpd_approvals,
    lgpd_approve_job,
    lgpd_decide,
    resolve_approver,
)
from lgpd_tasks_dagster.definitions import build_lgpd_definitions
from lgpd_tasks_dagster.errors import (
    ApprovalDecisionFailure,
    ApprovalDeniedFailure,
    ApprovalExpiredFailure,
    ApprovalRequiredFailure,
    LgpdFailure,
    MaskingFailure,
    PolicyFailure,
    StatementBlockedFailure,
    StatementFailedFailure,
)
from lgpd_tasks_dagster.identity import identity_from_context
from lgpd_tasks_dagster.io_manager import MaskingIOManager
from lgpd_tasks_dagster.resource import GuardedDatabaseResource

__all__ = [
    "ApprovalDecision",
    "ApprovalDecisionConfig",
    "ApprovalDecisionFailure",
    "ApprovalDeniedFailure",
    "ApprovalExpiredFailure",
    "ApprovalRequiredFailure",
    "GuardedDatabaseResource",
    "LgpdFailure",
    "MaskingFailure",
    "MaskingIOManager",
    "PolicyFailure",
    "StatementBlockedFailure",
    "StatementFailedFailure",
    "build_approval_sensor",
    "build_lgpd_definitions",
    "identity_from_context",
    "lgpd_approvals",
    "lgpd_approve_job",
    "lgpd_decide",
    "resolve_approver",
]
