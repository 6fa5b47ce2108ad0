"""Cells holding dicts and lists, records, tuple (MultiIndex) labels and ``attrs``."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from faker import Faker

from lgpd_tasks.errors import LabelsWouldMerge
from lgpd_tasks.masking import Masker, MaskingRules

CPF = "529.982.247-25"


@pytest.fixture
def person() -> dict[str, str]:
    fake = Faker("pt_BR")
    Faker.seed(20240611)
    return {"cpf": CPF, "email": fake.email(), "nome": fake.name(), "fone": "(11) 98765-4321"}


def _raw(blob: object, person: dict[str, str]) -> list[str]:
    data = pickle.dumps(blob)
    return [v for v in (*person.values(), "52998224725") if v.encode() in data]


def test_cells_holding_dicts_are_masked_under_their_keys_rules(person: dict[str, str]) -> None:
    frame = pd.DataFrame(
        {
            "contato": [
                {"cpf": person["cpf"], "email": person["email"], "nome": person["nome"]},
                None,
                {"documento": person["cpf"], "fones": [person["fone"]]},
            ],
            "cidade": ["Recife", "Natal", "Belém"],
        }
    )
    masked, report = Masker().mask_dataframe(frame)
    assert _raw(masked, person) == []
    first = masked.loc[0, "contato"]
    assert first == {"cpf": "***.***.***-25", "email": first["email"], "nome": "[NAME]"}
    assert first["email"].endswith(person["email"].split("@")[1])
    assert masked.loc[1, "contato"] is None
    assert masked["cidade"].tolist() == ["Recife", "Natal", "Belém"]
    assert frame.loc[0, "contato"]["cpf"] == person["cpf"]  # the input is left alone
    columns = {c.column: (c.detected_type, c.detected_by) for c in report.columns}
    assert columns["contato.cpf"] == ("cpf", "name")
    assert columns["contato.nome"] == ("name", "name")
    assert columns["contato.documento"] == ("document", "name")
    assert columns["contato.fones[]"] == ("phone", "content")


def test_cells_holding_lists_are_masked_by_content(person: dict[str, str]) -> None:
    frame = pd.DataFrame(
        {
            "contatos": [[person["email"], person["cpf"]], (person["cpf"],), "sem contato"],
            "docs": [np.array([person["cpf"]], dtype=object), None, None],
        }
    )
    masked, _ = Masker().mask_dataframe(frame)
    assert _raw(masked, person) == []
    assert masked.loc[0, "contatos"] == ["[EMAIL]", "[CPF]"]
    assert masked.loc[1, "contatos"] == ("[CPF]",)
    assert masked.loc[2, "contatos"] == "sem contato"
    assert isinstance(masked.loc[0, "docs"], np.ndarray)


def test_a_column_dropped_or_nulled_by_its_rule_goes_as_a_whole(person: dict[str, str]) -> None:
    frame = pd.DataFrame({"contato": [{"cpf": person["cpf"]}], "lista": [[person["cpf"]]]})
    masker = Masker(MaskingRules(columns={"contato": "drop", "lista": "null"}))
    masked, _ = masker.mask_dataframe(frame)
    assert list(masked.columns) == ["lista"]
    assert masked["lista"].isna().all()


def test_keys_in_cells_that_would_merge_are_refused() -> None:
    frame = pd.DataFrame({"totais": [{CPF: 1.0, "111.444.777-35": 2.0}]})
    with pytest.raises(LabelsWouldMerge):
        Masker().mask_dataframe(frame)


def test_records_are_masked_as_rows(person: dict[str, str]) -> None:
    records = [
        {"nome": person["nome"], "cidade": "Recife"},
        {"cpf": 52998224725, "cidade": "Natal", "contato": {"email": person["email"]}},
        {"observacao": f"ligar para {person['email']}"},
    ]
    masked, report = Masker().mask_records(records)
    assert _raw(masked, person) == []
    assert masked[0] == {"nome": "[NAME]", "cidade": "Recife"}
    assert masked[1]["cpf"] == "***.***.***-25"
    assert masked[1]["cidade"] == "Natal"
    assert list(masked[2]) == ["observacao"]  # keys stay where they were
    assert report.rows == 3
    assert set(report.masked_columns) >= {"nome", "cpf", "contato.email", "observacao"}
    dropped, _ = Masker(MaskingRules(columns={"nome": "drop"})).mask_records(records[:1])
    assert dropped == [{"cidade": "Recife"}]


def test_tuple_labels_are_masked_part_by_part(person: dict[str, str]) -> None:
    email = person["email"]
    pivot = pd.DataFrame(
        {"cidade": ["Recife", "Natal"], "email": [email, email], "valor": [1.0, 2.0]}
    ).pivot_table(index="cidade", columns="email", values=["valor"])
    masked, _ = Masker().mask_frame(pivot)
    assert _raw(masked, person) == []
    assert masked.columns.tolist() == [("valor", "[EMAIL]")]
    assert list(masked.columns.names) == [None, "email"]
    nested = pd.DataFrame(
        [[person["cpf"], 2.0]],
        columns=pd.MultiIndex.from_tuples([("contato", "cpf"), ("total", "x")], names=["a", email]),
    )
    masked, _ = Masker(MaskingRules(detect=False, columns={"cpf": "partial"})).mask_frame(nested)
    assert _raw(masked, person) == []
    assert masked.iloc[0, 0] == "***.***.***-25"  # the rule of the part that names one
    assert list(masked.columns.names) == ["a", "[EMAIL]"]
    two = pd.DataFrame(
        [[1, 2]], columns=pd.MultiIndex.from_tuples([("t", CPF), ("t", "111.444.777-35")])
    )
    with pytest.raises(LabelsWouldMerge):
        Masker().mask_frame(two)


def test_attrs_are_not_carried_over(person: dict[str, str]) -> None:
    frame = pd.DataFrame({"cidade": ["Recife"]})
    frame.attrs["source_row"] = f"{person['nome']} {person['cpf']}"
    masked, _ = Masker().mask_frame(frame)
    assert masked.attrs == {}
    assert _raw(masked, person) == []
    assert frame.attrs  # the input keeps its own
    flat, _ = Masker().mask_dataframe(frame)
    assert flat.attrs == {}
