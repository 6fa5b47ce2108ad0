"""MaskingIOManager on outputs that are not plain tables: indexes, labels, keys that collide."""

# No ``from __future__ import annotations``: Dagster reads the assets' annotations.
import pickle
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._serdes import serialize_value
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


def test_io_manager_masks_records_dicts_nested_cells_and_attrs(
    contractor: Contractor, tmp_path: Path
) -> None:
    fake = Faker("pt_BR")
    Faker.seed(20240612)
    name, email, cpf = fake.name(), fake.email(), "529.982.247-25"

    @dg.asset
    def records() -> list:
        return [{"nome": name, "cidade": "Recife"}, {"nome": fake.name(), "cidade": "Natal"}]

    @dg.asset
    def keyed() -> dict:
        return {"cpf": 52998224725, "cidade": "Recife", "frame": pd.DataFrame({"email": [email]})}

    @dg.asset
    def pair() -> tuple:
        return ({"nome": name}, [cpf])

    @dg.asset
    def cells() -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "contato": [{"cpf": cpf, "email": email, "nome": name}],
                "contatos": [[email, cpf]],
                "cidade": ["Recife"],
            }
        )
        frame.attrs["source_row"] = f"{name} {cpf}"
        return frame

    store = tmp_path / "store"
    result = dg.materialize(
        [records, keyed, pair, cells],
        resources={"io_manager": _io(contractor, store)},
        instance=contractor.instance,
    )
    assert result.success
    for asset in ("records", "keyed", "pair", "cells"):
        data = (store / asset).read_bytes()
        for value in (name, email, cpf, "52998224725"):
            assert value.encode() not in data, (asset, value)
    assert pickle.loads((store / "records").read_bytes())[0] == {
        "nome": "[NAME]",
        "cidade": "Recife",
    }
    keyed_value = pickle.loads((store / "keyed").read_bytes())
    assert keyed_value["cpf"].startswith("hmac:cpf:")  # the policy hashes CPFs
    assert keyed_value["cidade"] == "Recife"
    assert list(keyed_value["frame"].columns) == ["email"]
    assert pickle.loads((store / "pair").read_bytes()) == ({"nome": "[NAME]"}, ["[CPF]"])
    frame = pickle.loads((store / "cells").read_bytes())
    assert frame.loc[0, "contato"]["nome"] == "[NAME]"
    assert frame.loc[0, "contatos"] == ["[EMAIL]", "[CPF]"]
    assert frame.attrs == {}


def test_io_manager_masks_multiindex_labels_and_their_schema(
    contractor: Contractor, tmp_path: Path
) -> None:
    email = _people(1)[0][1]

    @dg.asset
    def pivot() -> pd.DataFrame:
        frame = pd.DataFrame({"cidade": ["Recife", "Natal"], "email": [email] * 2, "v": [1.0, 2]})
        return frame.pivot_table(index="cidade", columns="email", values=["v"])

    store = tmp_path / "store"
    result = dg.materialize(
        [pivot], resources={"io_manager": _io(contractor, store)}, instance=contractor.instance
    )
    assert result.success
    assert email.encode() not in (store / "pivot").read_bytes()
    for event in contractor.instance.all_logs(result.run_id):
        assert email not in serialize_value(event)
    schema = result.asset_materializations_for_node("pivot")[0].metadata["dagster/column_schema"]
    assert [c.name for c in schema.schema.columns] == ["('v', '[EMAIL]')"]
