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
