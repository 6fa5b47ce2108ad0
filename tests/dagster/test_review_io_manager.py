"""MaskingIOManager on outputs that are not plain tables: indexes, labels, keys that collide."""

# No ``from __future__ import annotations``: Dagster reads the assets' annotations.
import pickle
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from faker import Faker
from lgpd_tasks_dagster import MaskingFailure, MaskingIOManager

from .conftest import Contractor


def _people(n: int = 4) -> list[tuple[str, str]]:
    fake = Faker("pt_BR")
    Faker.seed(20240602)
    return [(fake.cpf(), fake.email()) for _ in range(n)]


def _io(contractor: Contractor, store: Path) -> MaskingIOManager:
    return MaskingIOManager(lgpd=contractor.lgpd, inner=dg.FilesystemIOManager(base_dir=str(store)))


def test_io_manager_masks_the_index_and_column_labels_of_a_frame(
    contractor: Contractor, tmp_path: Path
) -> None:
    people = _people()

    @dg.asset
    def by_cpf() -> pd.DataFrame:
        frame = pd.DataFrame({"cpf": [c for c, _ in people], "cidade": ["Recife"] * 4})
        return frame.set_index("cpf")

    @dg.asset
    def wide() -> pd.DataFrame:
        return pd.DataFrame({people[0][1]: [1], "cidade": ["Recife"]})

    store = tmp_path / "store"
    result = dg.materialize(
        [by_cpf, wide],
        resources={"io_manager": _io(contractor, store)},
        instance=contractor.instance,
    )
    assert result.success
    for name in ("by_cpf", "wide"):
        data = (store / name).read_bytes()
        for cpf, email in people:
            assert cpf.encode() not in data
            assert email.encode() not in data
    frame = pickle.loads((store / "by_cpf").read_bytes())
    assert frame.index.name == "cpf"
    assert list(frame["cidade"]) == ["Recife"] * 4
    assert frame.index.is_unique


def test_io_manager_refuses_keys_that_masking_would_merge(
    contractor: Contractor, tmp_path: Path
) -> None:
    people = _people()

    @dg.asset
    def totals() -> dict[str, float]:
        return {cpf: float(i) for i, (cpf, _) in enumerate(people)}

    store = tmp_path / "store"
    with pytest.raises(MaskingFailure, match="merg"):
        dg.materialize(
            [totals], resources={"io_manager": _io(contractor, store)}, instance=contractor.instance
        )
    assert not (store / "totals").exists()
