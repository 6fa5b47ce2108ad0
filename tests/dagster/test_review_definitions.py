"""build_lgpd_definitions masks every IO manager the user's Definitions declare."""

# No ``from __future__ import annotations``: Dagster reads the assets' annotations.
from pathlib import Path

import dagster as dg
import pandas as pd
from faker import Faker
from lgpd_tasks_dagster import build_lgpd_definitions

from .conftest import Contractor


def test_assets_with_their_own_io_manager_key_are_masked_too(
    contractor: Contractor, tmp_path: Path
) -> None:
    fake = Faker("pt_BR")
    Faker.seed(20240603)
    cpfs = [fake.cpf() for _ in range(5)]
    emails = [fake.email() for _ in range(5)]

    @dg.asset(io_manager_key="warehouse")
    def people() -> pd.DataFrame:
        return pd.DataFrame({"cpf": cpfs, "email": emails, "cidade": ["Recife"] * 5})

    store = tmp_path / "warehouse"
    defs = build_lgpd_definitions(
        dg.Definitions(
            assets=[people],
            resources={"warehouse": dg.FilesystemIOManager(base_dir=str(store))},
        ),
        lgpd=contractor.lgpd,
    )
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=contractor.instance, asset_selection=[people.key])
    assert result.success
    data = (store / "people").read_bytes()
    for value in (*cpfs, *emails):
        assert value.encode() not in data
    assert b"Recife" in data


def test_io_managers_bound_to_assets_and_jobs_are_masked_too(
    contractor: Contractor, tmp_path: Path
) -> None:
    fake = Faker("pt_BR")
    Faker.seed(20240613)
    cpf, email = fake.cpf(), fake.email()

    def frame() -> pd.DataFrame:
        return pd.DataFrame({"cpf": [cpf], "email": [email], "cidade": ["Recife"]})

    @dg.asset(io_manager_def=dg.FilesystemIOManager(base_dir=str(tmp_path / "own_io")))
    def own_io() -> pd.DataFrame:
        return frame()

    @dg.op
    def people_op() -> pd.DataFrame:
        return frame()

    job_io = dg.FilesystemIOManager(base_dir=str(tmp_path / "job_io"))

    @dg.job(resource_defs={"io_manager": job_io})
    def people_job() -> None:
        people_op()

    @dg.job
    def default_job() -> None:
        people_op()

    schedule = dg.ScheduleDefinition(job=people_job, cron_schedule="0 3 * * *")
    sensor = dg.SensorDefinition(name="people_sensor", job=people_job, evaluation_fn=lambda _: None)
    main = tmp_path / "main_io"
    defs = build_lgpd_definitions(
        dg.Definitions(
            assets=[own_io],
            jobs=[people_job, default_job],
            schedules=[schedule],
            sensors=[sensor],
        ),
        lgpd=contractor.lgpd,
        io_manager=dg.FilesystemIOManager(base_dir=str(main)),
    )
    asset_job = defs.resolve_implicit_global_asset_job_def()
    assert asset_job.execute_in_process(
        instance=contractor.instance, asset_selection=[own_io.key]
    ).success
    for job in ("people_job", "default_job"):
        assert defs.resolve_job_def(job).execute_in_process(instance=contractor.instance).success
    assert defs.resolve_schedule_def(schedule.name).job_name == "people_job"
    stored = [p for d in ("own_io", "job_io", "main_io") for p in (tmp_path / d).rglob("*")]
    assert {p.parts[len(tmp_path.parts)] for p in stored if p.is_file()} == {
        "own_io",
        "job_io",
        "main_io",
    }
    for path in stored:
        if path.is_file():
            data = path.read_bytes()
            assert cpf.encode() not in data, path
            assert email.encode() not in data, path
