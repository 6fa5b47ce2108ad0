"""The FastAPI app Airflow mounts at ``/lgpd``: the Approvals and Audit pages and their JSON API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError

from lgpd_tasks.approvals import ApprovalRequest
from lgpd_tasks.errors import AuditUnavailable, PolicyError
from lgpd_tasks_airflow.plugin import service
from lgpd_tasks_airflow.plugin.access import (
    LoginRequired,
    PageUserDep,
    Permissions,
    check_form_token,
    check_same_origin,
    csrf_token,
    login_url,
    uses_cookie_session,
)

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


class DecisionBody(BaseModel):
    """``POST /lgpd/api/approvals/{id}/approve`` and ``/deny`` take ``{"reason": "..."}``."""

    reason: str = ""


# -- JSON API -----------------------------------------------------------------------------

api = APIRouter(prefix="/api", tags=["LGPD"])


@api.get("/approvals")
def api_list_approvals(
    user: GetUserDep, status: str = Query("all", description=", ".join(service.APPROVAL_FILTERS))
) -> dict[str, Any]:
    perms = Permissions(user)
    found = service.list_approvals(perms, status)
    return {
        "approvals": [service.approval_view(perms, r) for r in found],
        "total": len(found),
    }


@api.get("/approvals/{request_id}")
def api_get_approval(request_id: str, user: GetUserDep) -> dict[str, Any]:
    perms = Permissions(user)
    return service.approval_view(perms, service.get_approval(perms, request_id))


@api.post("/approvals/{request_id}/approve", response_model=None)
async def api_approve(request_id: str, request: Request, user: GetUserDep) -> Response:
    return await _decide(request, user, request_id, "approve")


@api.post("/approvals/{request_id}/deny", response_model=None)
async def api_deny(request_id: str, request: Request, user: GetUserDep) -> Response:
    return await _decide(request, user, request_id, "deny")


@api.get("/audit")
def api_list_audit(
    user: GetUserDep,
    dag_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    decision: str | None = None,
    limit: int = Query(100, ge=1, le=service.MAX_LIMIT),
) -> dict[str, Any]:
    perms = Permissions(user)
    records = service.list_records(
        perms, dag_id=dag_id, run_id=run_id, task_id=task_id, decision=decision, limit=limit
    )
    return {"records": [service.record_view(r) for r in records], "total": len(records)}


@api.get("/audit/{record_id}")
def api_get_record(record_id: str, user: GetUserDep) -> dict[str, Any]:
    return service.record_view(service.get_record(Permissions(user), record_id))


async def _decide(request: Request, user: Any, request_id: str, action: str) -> Response:
    """One endpoint for the API (JSON) and the pages (a form post that redirects back)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    perms = Permissions(user)
    if kind == "application/json":
        if uses_cookie_session(request):
            check_same_origin(request)
        try:
            body = DecisionBody.model_validate(await request.json())
        except (ValueError, ValidationError) as err:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, 'expected {"reason": "..."}'
            ) from err
        decided = service.decide(perms, request_id, action, body.reason)
        return JSONResponse(service.approval_view(perms, decided))
    if kind in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        form = await request.form()
        if uses_cookie_session(request):
            check_same_origin(request)
            check_form_token(request, str(form.get("csrf_token", "")))
        back = _safe_next(request, str(form.get("next", "")))
        try:
            service.decide(perms, request_id, action, str(form.get("reason", "")))
        except HTTPException as exc:
            if exc.status_code == status.HTTP_404_NOT_FOUND:
                raise
            return _approval_page(
                request, perms, request_id, error=str(exc.detail), code=exc.status_code
            )
        return RedirectResponse(back, status_code=status.HTTP_303_SEE_OTHER)
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        'send application/json ({"reason": "..."}) or a form',
    )


# -- pages --------------------------------------------------------------------------------

pages = APIRouter(include_in_schema=False)


@pages.get("/")
def index(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{_base(request)}/approvals")


@pages.get("/approvals", response_class=HTMLResponse)
def approvals_page(request: Request, user: PageUserDep, status: str = "pending") -> Response:
    perms = Permissions(user)
    which = status if status in service.APPROVAL_FILTERS else "pending"
    found = service.list_approvals(perms, which)
    pending = len(found) if which == "pending" else len(service.list_approvals(perms, "pending"))
    return _render(
        request,
        "approvals.html",
        user,
        active="approvals",
        which=which,
        pending=pending,
        approvals=[service.approval_view(perms, r) for r in found],
    )


@pages.get("/approvals/{request_id}", response_class=HTMLResponse)
def approval_page(request: Request, request_id: str, user: PageUserDep) -> Response:
    return _approval_page(request, Permissions(user), request_id)


@pages.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    user: PageUserDep,
    dag_id: str = "",
    run_id: str = "",
    task_id: str = "",
    decision: str = "",
    limit: int = 100,
) -> Response:
    perms = Permissions(user)
    records = service.list_records(
        perms, dag_id=dag_id, run_id=run_id, task_id=task_id, decision=decision, limit=limit
    )
    return _render(
        request,
        "audit.html",
        user,
        active="audit",
        filters={"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "decision": decision},
        decisions=service.DECISIONS,
        records=[service.record_view(r) for r in records],
    )


@pages.get("/audit/{record_id}", response_class=HTMLResponse)
def record_page(request: Request, record_id: str, user: PageUserDep) -> Response:
    record = service.get_record(Permissions(user), record_id)
    return _render(request, "record.html", user, active="audit", record=service.record_view(record))


def _approval_page(
    request: Request, perms: Permissions, request_id: str, *, error: str = "", code: int = 200
) -> Response:
    found: ApprovalRequest = service.get_approval(perms, request_id)
    return _render(
        request,
        "approval.html",
        perms.user,
        active="approvals",
        approval=service.approval_view(perms, found),
        error=error,
        status_code=code,
    )


def _render(
    request: Request, name: str, user: Any, *, status_code: int = 200, **context: Any
) -> Response:
    context.update(
        base=_base(request),
        user_name=user.get_name(),
        csrf_token=csrf_token(request),
        here=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        embedded=request.query_params.get("embed") == "1",
    )
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _safe_next(request: Request, target: str) -> str:
    """Redirect only inside these pages (no open redirect through ``next``)."""
    base = _base(request)
    if target.startswith(f"{base}/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{base}/approvals"


def _when(value: str | None) -> str:
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _until(value: str | None) -> str:
    """How long from now until ``value`` ("in 55 min", "3 h ago")."""
    if not value:
        return ""
    try:
        delta = datetime.fromisoformat(value) - datetime.now(UTC)
    except ValueError:
        return ""
    seconds = int(delta.total_seconds())
    amount = abs(seconds)
    if amount < 60:
        text = f"{amount} s"
    elif amount < 3600:
        text = f"{amount // 60} min"
    elif amount < 86400:
        text = f"{amount // 3600} h {amount % 3600 // 60} min"
    else:
        text = f"{amount // 86400} d"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.filters["until"] = _until


# -- the app ------------------------------------------------------------------------------


def create_app() -> FastAPI:
    """The app Airflow mounts (no I/O here: the store is found on each request)."""
    app = FastAPI(
        title="lgpd-tasks: approvals and audit",
        description="Approve or deny guarded statements and read the LGPD audit of DAG runs.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.include_router(api)
    app.include_router(pages)

    @app.middleware("http")
    async def _not_framed_elsewhere(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Approve and Deny are one click away: only Airflow's own UI (same origin) may show
        # these pages in a frame, so no other site can overlay them (clickjacking).
        response = await call_next(request)
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'self'")
        return response

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(login_url(request), status_code=status.HTTP_303_SEE_OTHER)

    @app.exception_handler(AuditUnavailable)
    @app.exception_handler(PolicyError)
    async def _not_configured(request: Request, exc: Exception) -> Response:
        # the store or the policy cannot be used: say which and how to fix it, decide nothing
        code = status.HTTP_503_SERVICE_UNAVAILABLE
        if "/api/" in request.url.path:
            return JSONResponse({"detail": str(exc)}, status_code=code)
        return TEMPLATES.TemplateResponse(
            request, "unavailable.html", {"message": str(exc)}, status_code=code
        )

    return app
