"""Who is asking and what they may do: Airflow's logged-in user and its auth manager.

The pipeline of an approval request or audit record is checked as a DAG id. Seeing a
request needs read access to the DAG's human-in-the-loop details, deciding it needs write
access to them (as for Airflow's own HITL approvals); the audit needs the DAG's audit log.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import bearer_scheme, get_user
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod


class LoginRequired(Exception):
    """A page was opened without a valid Airflow session: send the browser to log in."""


async def page_user(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> BaseUser:
    """Like ``GetUserDep`` but a missing or expired session redirects to Airflow's login."""
    try:
        return await get_user(request, None, bearer)
    except HTTPException as exc:
        if exc.status_code in {status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN}:
            raise LoginRequired from None
        raise


PageUserDep = Annotated[BaseUser, Depends(page_user)]


def login_url(request: Request) -> str:
    return get_auth_manager().get_url_login(next_url=str(request.url))


class Permissions:
    """The user's rights per DAG id, asked of the auth manager once per request and DAG."""

    def __init__(self, user: BaseUser) -> None:
        self.user = user
        self._cache: dict[tuple[str, str, DagAccessEntity], bool] = {}

    def can_see_requests(self, dag_id: str) -> bool:
        return self._allowed("GET", DagAccessEntity.HITL_DETAIL, dag_id)

    def can_decide(self, dag_id: str) -> bool:
        return self.can_see_requests(dag_id) and self._allowed(
            "PUT", DagAccessEntity.HITL_DETAIL, dag_id
        )

    def can_read_audit(self, dag_id: str) -> bool:
        return self._allowed("GET", DagAccessEntity.AUDIT_LOG, dag_id)

    def _allowed(self, method: ResourceMethod, entity: DagAccessEntity, dag_id: str) -> bool:
        key = (method, dag_id, entity)
        if key not in self._cache:
            self._cache[key] = bool(
                get_auth_manager().is_authorized_dag(
                    method=method,
                    access_entity=entity,
                    details=DagDetails(id=dag_id, team_name=_team_name(dag_id)),
                    user=self.user,
                )
            )
        return self._cache[key]


def _team_name(dag_id: str) -> str | None:
    # Teams exist only in multi-team mode; elsewhere the lookup would be a wasted query.
    from airflow.configuration import conf

    if not conf.getboolean("core", "multi_team", fallback=False):
        return None
    from airflow.models.dag import DagModel

    return DagModel.get_team_name(dag_id)


# -- cross-site request forgery ------------------------------------------------------------
#
# Airflow's session is the ``_token`` cookie (SameSite=Lax). A request that carries a bearer
# token is not at risk: a foreign site cannot make the browser add one. A cookie-carried
# decision must come from our own pages: its Origin (or Referer) must be this host, and a
# form post must carry a token derived from the session cookie, which a foreign site
# cannot read.


def uses_cookie_session(request: Request) -> bool:
    """Whether the session cookie, not a bearer token, may be what authenticates the request.

    Only a non-empty bearer token counts as one: with ``Authorization: Bearer`` and nothing
    after it Airflow falls back to the cookie, so the cookie's CSRF checks must apply.
    """
    scheme, _, credential = request.headers.get("authorization", "").strip().partition(" ")
    return not (scheme.lower() == "bearer" and credential.strip())


def csrf_token(request: Request) -> str:
    session = request.cookies.get(COOKIE_NAME_JWT_TOKEN, "")
    return hmac.new(session.encode(), b"lgpd-tasks decision form", hashlib.sha256).hexdigest()


def check_same_origin(request: Request) -> None:
    """Refuse a cookie-authenticated change whose Origin or Referer is another host."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "a decision made with the session cookie needs an Origin or Referer header",
        )
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    if urlsplit(source).netloc.lower() != host.split(",")[0].strip().lower():
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site decision refused")


def check_form_token(request: Request, submitted: str) -> None:
    if not hmac.compare_digest(submitted, csrf_token(request)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form's token is missing or stale")
