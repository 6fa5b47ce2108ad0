"""build_lgpd_definitions: add the approval job, the sensor and the guarded wiring to Definitions."""

from __future__ import annotations

from typing import Any

import dagster as dg

from lgpd_tasks_dagster.approvals import (
    RELAUNCH_ASSETS_JOB,
    build_approval_sensor,
    lgpd_approvals,
    lgpd_approve_job,
)
from lgpd_tasks_dagster.io_manager import MaskingIOManager
from lgpd_tasks_dagster.resource import APPROVALS_ASSET, GuardedDatabaseResource

RESOURCE_KEY = "lgpd"


def build_lgpd_definitions(
    defs: dg.Definitions | None = None,
    *,
    lgpd: GuardedDatabaseResource,
    io_manager: Any = None,
    mask_io: bool = True,
    sensor_interval_seconds: int = 30,
    sensor_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.Definitions:
    """Your Definitions with lgpd-tasks wired in.

    Adds the ``lgpd`` resource, the ``lgpd_approvals`` asset (one partition per approval
    request), the ``lgpd_approve`` job, the ``lgpd_approval_sensor`` that relaunches gated
    runs once approved, and, unless ``mask_io=False``, a :class:`MaskingIOManager` as
    ``io_manager`` wrapping ``io_manager`` (or your own ``io_manager`` resource, or
    Dagster's ``FilesystemIOManager``). Every other IO manager among your resources (an
    asset's ``io_manager_key``) is wrapped in a :class:`MaskingIOManager` too.
    """
    defs = defs or dg.Definitions()
    resources: dict[str, Any] = dict(defs.resources or {})
    resources[RESOURCE_KEY] = lgpd
    if mask_io:
        resources["io_manager"] = (
            io_manager or resources.get("io_manager") or dg.FilesystemIOManager()
        )
        # an asset's own io_manager_key would otherwise store its output unmasked
        for key, value in list(resources.items()):
            if _is_io_manager(value) and not isinstance(value, MaskingIOManager):
                resources[key] = MaskingIOManager(lgpd=lgpd, inner=value)

    jobs: list[Any] = list(defs.jobs or [])
    targets: list[Any] = list(jobs)
    if defs.assets:
        relaunch = dg.define_asset_job(
            RELAUNCH_ASSETS_JOB,
            selection=dg.AssetSelection.all().materializable()
            - dg.AssetSelection.assets(APPROVALS_ASSET),
            description="Relaunches approved asset materializations that had no job of their own.",
        )
        jobs.append(relaunch)
        targets.append(relaunch)
    sensor = build_approval_sensor(
        targets, minimum_interval_seconds=sensor_interval_seconds, default_status=sensor_status
    )
    return dg.Definitions(
        assets=[*(defs.assets or []), lgpd_approvals],
        schedules=defs.schedules,
        sensors=[*(defs.sensors or []), sensor],
        jobs=[*jobs, lgpd_approve_job],
        resources=resources,
        executor=defs.executor,
        loggers=defs.loggers,
        asset_checks=defs.asset_checks,
        metadata=defs.metadata,
    )


def _is_io_manager(resource: Any) -> bool:
    return isinstance(
        resource, (dg.IOManagerDefinition, dg.ConfigurableIOManagerFactory, dg.IOManager)
    )
