"""The LGPD pages in the Airflow UI: an Airflow 3 plugin with Approvals, Audit and their API.

Registered through the ``airflow.plugins`` entry point. The api-server mounts the app at
``/lgpd``; the nav gains an "LGPD" menu (Approvals, Audit), and each task instance and DAG
run gains an "LGPD audit" tab listing its records.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin

from lgpd_tasks_airflow.plugin import listener

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

URL_PREFIX = "/lgpd"


class LazyApp:
    """An ASGI app that builds the FastAPI app on its first request.

    Every Airflow process loads plugins (task runners too); only the api-server serves
    them, so the web stack is imported there and nowhere else.
    """

    def __init__(self) -> None:
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> ASGIApp:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from lgpd_tasks_airflow.plugin.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class LgpdPlugin(AirflowPlugin):
    """Approvals and audit pages for lgpd-tasks inside Airflow's UI."""

    name = "lgpd_tasks"
    # keeps Python tasks' return values (raw DataFrames...) out of task logs
    listeners: list[Any] = [listener]  # noqa: RUF012
    fastapi_apps: list[Any] = [  # noqa: RUF012 (Airflow reads these class attributes)
        {"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "LGPD approvals and audit"}
    ]
    external_views: list[Any] = [  # noqa: RUF012
        {
            "name": "Approvals",
            "href": f"{URL_PREFIX}/approvals",
            "category": "LGPD",
            "url_route": "lgpd-approvals",
            "destination": "nav",
        },
        {
            "name": "Audit",
            "href": f"{URL_PREFIX}/audit",
            "category": "LGPD",
            "url_route": "lgpd-audit",
            "destination": "nav",
        },
        {
            # The UI fills {DAG_ID}, {RUN_ID} and {TASK_ID} in for the task instance shown.
            "name": "LGPD audit",
            "href": f"{URL_PREFIX}/audit?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&task_id={{TASK_ID}}&embed=1",
            "url_route": "lgpd-task-audit",
            "destination": "task_instance",
        },
        {
            "name": "LGPD audit",
            "href": f"{URL_PREFIX}/audit?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&embed=1",
            "url_route": "lgpd-run-audit",
            "destination": "dag_run",
        },
    ]


__all__ = ["URL_PREFIX", "LazyApp", "LgpdPlugin"]
