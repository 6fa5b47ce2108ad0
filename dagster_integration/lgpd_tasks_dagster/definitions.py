"""build_lgpd_definitions: add the approval job, the sensor and the guarded wiring to Definitions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.job_definition import default_job_io_manager
from dagster._core.execution.build_resources import wrap_resources_for_execution
from dagster._utils.warnings import disable_dagster_warnings

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
    asset's ``io_manager_key``), bound to an asset (``io_manager_def``, ``resource_defs``) or
    to a job (``resource_defs``), is wrapped in a :class:`MaskingIOManager` too; schedules
    and sensors get the wrapped jobs.
    """
    defs = defs or dg.Definitions()
    resources: dict[str, Any] = dict(defs.resources or {})
    resources[RESOURCE_KEY] = lgpd
    assets: list[Any] = list(defs.assets or [])
    jobs: list[Any] = list(defs.jobs or [])
    schedules: list[Any] = list(defs.schedules or [])
    sensors: list[Any] = list(defs.sensors or [])
    if mask_io:
        resources["io_manager"] = (
            io_manager or resources.get("io_manager") or dg.FilesystemIOManager()
        )
        # an asset's own io_manager_key would otherwise store its output unmasked
        for key, value in list(resources.items()):
            if _is_io_manager(value) and not _is_masking(value):
                resources[key] = MaskingIOManager(lgpd=lgpd, inner=value)
        assets = [_mask_asset_io(asset, lgpd) for asset in assets]
        jobs, schedules, sensors = _mask_job_io(jobs, schedules, sensors, lgpd)

    targets: list[Any] = list(jobs)
    if assets:
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
        assets=[*assets, lgpd_approvals],
        schedules=schedules,
        sensors=[*sensors, sensor],
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


def _is_masking(resource: Any) -> bool:
    """A MaskingIOManager, as given or as the definition Dagster made of it."""
    cls = getattr(resource, "configurable_resource_cls", None)
    return isinstance(resource, MaskingIOManager) or (
        isinstance(cls, type) and issubclass(cls, MaskingIOManager)
    )


def _unmasked_io(resource_defs: Mapping[str, Any]) -> dict[str, Any]:
    """The IO managers among ``resource_defs`` that store outputs unmasked, by key."""
    return {
        key: value
        for key, value in resource_defs.items()
        if _is_io_manager(value) and not _is_masking(value)
    }


def _mask_asset_io(asset: Any, lgpd: GuardedDatabaseResource) -> Any:
    """``asset`` with the IO managers bound to it (``io_manager_def``, ``resource_defs``)
    wrapped; a source asset only loads, so it keeps its own."""
    if not isinstance(asset, dg.AssetsDefinition):
        return asset
    unmasked = _unmasked_io(asset.resource_defs)
    if not unmasked:
        return asset
    wrapped = {key: MaskingIOManager(lgpd=lgpd, inner=value) for key, value in unmasked.items()}
    # AssetsDefinition.with_resources refuses keys it has already: rebuild it as it does
    attributes = asset.get_attributes_dict()
    attributes["resource_defs"] = {**asset.resource_defs, **wrapped}
    try:
        with disable_dagster_warnings():
            return asset.__class__(**attributes)
    except Exception as err:  # Dagster's own error, named and re-raised
        names = ", ".join(k.to_user_string() for k in asset.keys)
        raise dg.DagsterInvalidDefinitionError(
            f"lgpd-tasks cannot wrap the IO managers {sorted(unmasked)} bound to asset(s) "
            f"{names} in a MaskingIOManager ({type(err).__name__}); declare them in "
            "Definitions(resources=...) and use io_manager_key instead"
        ) from err


def _mask_job_io(
    jobs: list[Any], schedules: list[Any], sensors: list[Any], lgpd: GuardedDatabaseResource
) -> tuple[list[Any], list[Any], list[Any]]:
    """Jobs with the IO managers of their own ``resource_defs`` wrapped, and the schedules and
    sensors that target them pointing at the wrapped jobs."""
    replaced: dict[int, dg.JobDefinition] = {}

    def masked(job: Any) -> Any:
        if not isinstance(job, dg.JobDefinition):
            return job
        if id(job) in replaced:
            return replaced[id(job)]
        unmasked = _unmasked_io(job.resource_defs)
        # the default IO manager of a job gives way to the Definitions' (masking) io_manager
        if unmasked.get("io_manager") is default_job_io_manager:
            del unmasked["io_manager"]
        if not unmasked:
            return job
        wrapped = {key: MaskingIOManager(lgpd=lgpd, inner=value) for key, value in unmasked.items()}
        replaced[id(job)] = job.with_top_level_resources(
            {**job.resource_defs, **wrap_resources_for_execution(wrapped)}
        )
        return replaced[id(job)]

    jobs = [masked(job) for job in jobs]
    new_schedules: list[Any] = []
    for schedule in schedules:
        if isinstance(schedule, dg.ScheduleDefinition) and schedule.target.has_job_def:
            job = schedule.job
            if masked(job) is not job:
                schedule = schedule.with_updated_job(masked(job))
        new_schedules.append(schedule)
    new_sensors: list[Any] = []
    for sensor in sensors:
        targets = list(getattr(sensor, "targets", []))
        jobs_of = [t.job_def if t.has_job_def else None for t in targets]
        if any(job is not None and masked(job) is not job for job in jobs_of):
            if any(job is None for job in jobs_of):
                raise dg.DagsterInvalidDefinitionError(
                    f"lgpd-tasks cannot wrap the IO managers of the jobs sensor {sensor.name!r} "
                    "targets alongside asset selections; declare the IO managers in "
                    "Definitions(resources=...) instead"
                )
            sensor = sensor.with_updated_jobs([masked(job) for job in jobs_of])
        new_sensors.append(sensor)
    return jobs, new_schedules, new_sensors
