"""What the pages and the JSON API share: reading and deciding under the user's permissions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import HTTPException, status

from lgpd_tasks.approvals import ApprovalRequest, Approver, Status
from lgpd_tasks.audit import AuditRecord, EntryFilter
from lgpd_tasks.errors import ApprovalError
from lgpd_tasks_airflow.plugin.access import Permissions
from lgpd_tasks_airflow.plugin.stores import approval_store

APPROVAL_FILTERS = ("pending", "decided", "approved", "denied", "expired", "all")
DECISIONS = ("allow", "approve", "block", "requested", "approved", "denied", "expired", "masked")
ISSUER = "airflow"
MAX_LIMIT = 500

# Only requests opened by Airflow tasks belong to DAGs this auth manager can speak for;
# requests from Dagster or the command line are decided where they were asked.
_AIRFLOW_PRINCIPAL = "airflow:"


def list_approvals(perms: Permissions, which: str = "all") -> list[ApprovalRequest]:
    if which not in APPROVAL_FILTERS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"status must be one of {', '.join(APPROVAL_FILTERS)}, not {which!r}",
        )
    store = approval_store()
    wanted = which if which in {"pending", "approved", "denied", "expired"} else None
    found = store.list_requests(status=wanted)
    if which == "decided":
        found = [r for r in found if r.status is not Status.PENDING]
    return [r for r in found if _visible(perms, r)]


def get_approval(perms: Permissions, request_id: str) -> ApprovalRequest:
    try:
        found = approval_store().get(request_id)
    except ApprovalError:
        found = None
    if found is None or not _visible(perms, found):
        # the same answer for "absent" and "not yours to see": ids do not leak DAG names
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no approval request {request_id!r}")
    return found


def decide(perms: Permissions, request_id: str, action: str, reason: str) -> ApprovalRequest:
    """Approve or deny as the logged-in user; the store refuses own and decided requests."""
    request = get_approval(perms, request_id)
    if not perms.can_decide(request.pipeline):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{perms.user.get_name()!r} may not decide approvals of DAG {request.pipeline!r}",
        )
    reason = reason.strip()
    if action == "deny" and not reason:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a denial needs a reason")
    approver = Approver(
        name=perms.user.get_name(), verified=True, issuer=ISSUER, groups=user_groups(perms.user)
    )
    store = approval_store()
    try:
        if action == "approve":
            return store.approve(request_id, approver, reason)
        return store.deny(request_id, approver, reason)
    except ApprovalError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from None


def approval_view(perms: Permissions, request: ApprovalRequest) -> dict[str, Any]:
    """The request as the API returns it, with what this user may do about it."""
    data = request.to_dict()
    own = is_own(perms.user, request)
    data["own_request"] = own
    data["may_decide"] = (
        request.status is Status.PENDING and not own and perms.can_decide(request.pipeline)
    )
    return data


def user_groups(user: BaseUser) -> tuple[str, ...]:
    """The role(s) and teams the auth manager gives the user, for ``group:`` approvers."""
    groups: list[str] = []
    role = getattr(user, "role", None)
    if isinstance(role, str) and role:
        groups.append(role.lower())
    for name in ("roles", "teams", "groups"):
        for item in getattr(user, name, None) or ():
            label = getattr(item, "name", item)
            if isinstance(label, str) and label:
                groups.append(label if name == "teams" else label.lower())
    return tuple(dict.fromkeys(groups))


def is_own(user: BaseUser, request: ApprovalRequest) -> bool:
    name = user.get_name()
    asked = {request.requested_by, request.requested_user} - {None}
    return bool(asked & {name, f"cli:{name}"})


def list_records(
    perms: Permissions,
    *,
    dag_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    decision: str | None = None,
    limit: int = 100,
) -> list[AuditRecord]:
    """The newest records matching the filter that the user may read, newest first."""
    if dag_id and not perms.can_read_audit(dag_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{perms.user.get_name()!r} may not read the audit of DAG {dag_id!r}",
        )
    limit = max(1, min(limit, MAX_LIMIT))
    where = EntryFilter(
        pipeline=dag_id or None,
        run_id=run_id or None,
        task=task_id or None,
        decision=decision or None,
    )
    records = approval_store().audit.records(where, limit=limit)
    return [r for r in reversed(records) if perms.can_read_audit(r.entry.pipeline)]


def get_record(perms: Permissions, record_id: str) -> AuditRecord:
    audit = approval_store().audit
    found = audit.entries(EntryFilter(record_id=record_id), limit=1)
    if not found or not perms.can_read_audit(found[0].pipeline):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no audit record {record_id!r}")
    entry = found[0]
    outcome = None
    if entry.kind == "statement":
        outcomes = audit.entries(EntryFilter(ref=entry.record_id, kind="outcome"), limit=1)
        outcome = outcomes[0] if outcomes else None
    return AuditRecord(entry, outcome)


def record_view(record: AuditRecord) -> dict[str, Any]:
    data = record.to_dict()
    data["rows"] = record.rows
    data["statements"] = statement_facts(record.entry.details)
    data["lineage"] = lineage_edges(record.entry.details.get("lineage"))
    return data


def statement_facts(details: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tables, columns and lineage of each analysed statement, as plain name lists."""
    facts = []
    for analysis in details.get("statements") or []:
        if not isinstance(analysis, Mapping):
            continue
        facts.append(
            {
                "kind": str(analysis.get("kind", "?")),
                "normalized": analysis.get("normalized"),
                "tables_read": names(analysis.get("tables_read")),
                "tables_written": names(analysis.get("tables_written")),
                "columns_read": names(analysis.get("columns_read")),
                "columns_written": names(analysis.get("columns_written")),
                "lineage": lineage_edges(analysis.get("lineage")),
            }
        )
    return facts


def lineage_edges(value: Any) -> list[dict[str, Any]]:
    edges = []
    for edge in value or []:
        if isinstance(edge, Mapping):
            edges.append(
                {"target": _name(edge.get("target")), "sources": names(edge.get("sources"))}
            )
        else:
            edges.append({"target": _name(edge), "sources": []})
    return edges


def names(value: Any) -> list[str]:
    """``["a.b"]``, ``{"a": ["b"]}`` and ``[{"table": "a", "column": "b"}]`` as ``["a.b"]``."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        out: list[str] = []
        for table, columns in value.items():
            if isinstance(columns, str):
                out.append(f"{table}.{columns}" if columns != "*" else f"{table}.*")
            elif isinstance(columns, Iterable):
                out.extend(f"{table}.{c}" for c in columns)
            else:
                out.append(str(table))
        return out
    if isinstance(value, Iterable):
        return [_name(v) for v in value]
    return [str(value)]


def _name(value: Any) -> str:
    if isinstance(value, Mapping):
        table, column = value.get("table"), value.get("column")
        if table and column:
            return f"{table}.{column}"
        return str(column or table or value.get("name") or dict(value))
    return str(value)


def _visible(perms: Permissions, request: ApprovalRequest) -> bool:
    return request.requested_by.startswith(_AIRFLOW_PRINCIPAL) and perms.can_see_requests(
        request.pipeline
    )
