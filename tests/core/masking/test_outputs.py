"""What counts as already masked, and how much of a value ``partial`` may keep."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lgpd_tasks.errors import MaskingError, PolicyError
from lgpd_tasks.masking import Masker, MaskingRules
from lgpd_tasks.policy import load_policy


@pytest.mark.parametrize(
    ("column", "value", "raw"),
    [
        ("cpf", "316.053.050-73 *", "316.053.050"),
        ("cpf", "*400.481.269-00", "400.481.269"),
        ("cpf", "[x] 529.982.247-25", "529.982.247"),
        ("cpf", "hmac:cpf:52998224725 x", "52998224725"),
        ("email", "ana.silva@gmail.com *principal", "ana.silva"),
        ("telefone", "(11) 98765-4321 *", "98765"),
    ],
)
def test_a_star_or_bracket_somewhere_does_not_make_a_cell_masked(
    column: str, value: str, raw: str
) -> None:
    masked, _ = Masker().mask_dataframe(pd.DataFrame({column: [value, value]}))
    assert raw not in masked[column][0]


def test_every_strategy_output_is_left_as_it_is() -> None:
    frame = pd.DataFrame(
        {
            "cpf": ["529.982.247-25", "253.660.082-39"],
            "cnpj": ["11.222.333/0001-81", "11222333000181"],
            "email": ["ana@pf.gov.br", "joao@x.com"],
            "telefone": ["(11) 98765-4321", "(21) 3456-7890"],
            "cep": ["01310-100", "20040-002"],
            "nome": ["Maria da Silva", "João Souza"],
            "ip": ["10.1.2.3", "2001:db8::1"],
        }
    )
    masker = Masker(MaskingRules(types={"name": "partial"}))
    once, _ = masker.mask_dataframe(frame)
    twice, report = masker.mask_dataframe(once.copy(deep=True))
    pd.testing.assert_frame_equal(twice, once)
    assert report.cells_masked == 0


@pytest.mark.parametrize(
    ("column", "keep", "message"),
    [
        ("cpf", 11, "keep_last for cpf must be at most 4, got 11"),
        ("cnpj", 5, "keep_last for cnpj must be at most 4"),
        ("telefone", 8, "keep_last for phone must be at most 4"),
        ("cartao", 16, "keep_last for card must be at most 4"),
        ("cpf", -1, "keep_last must be 0 or more"),
    ],
)
def test_partial_cannot_keep_the_whole_value(
    tmp_path: Path, column: str, keep: int, message: str
) -> None:
    spec = {"strategy": "partial", "keep_last": keep}
    with pytest.raises(MaskingError, match=message):
        Masker(MaskingRules(columns={column: spec}))
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\nmasking:\n  columns: {{{column}: {{strategy: partial, keep_last: {keep}}}}}\n"
    )
    with pytest.raises(PolicyError, match=message):
        load_policy(policy)


def test_partial_keep_last_is_checked_against_the_type_found_by_content() -> None:
    masker = Masker(MaskingRules(columns={"doc": {"strategy": "partial", "keep_last": 11}}))
    with pytest.raises(MaskingError, match=r"column 'doc'.*at most 4"):
        masker.mask_dataframe(pd.DataFrame({"doc": ["529.982.247-25"] * 30}))
    kept, _ = Masker(
        MaskingRules(columns={"cpf": {"strategy": "partial", "keep_last": 2}})
    ).mask_dataframe(pd.DataFrame({"cpf": ["529.982.247-25"]}))
    assert kept["cpf"].tolist() == ["***.***.***-25"]


def test_partial_masks_every_value_of_a_cell_holding_several() -> None:
    frame = pd.DataFrame(
        {
            "email": [
                "ana@x.com; joao.pessoa@gmail.com",
                "Contato: ana@x.com CPF 316.053.050-73",
                "maria@pf.gov.br",
                "sem email",
            ]
        },
        index=[7, 7, 3, 3],  # labels repeat: cells are told apart by position
    )
    masked, report = Masker().mask_dataframe(frame)
    assert masked["email"].tolist() == [
        "[EMAIL]; [EMAIL]",
        "Contato: [EMAIL] CPF [CPF]",
        "***@pf.gov.br",
        "sem email",
    ]
    assert report.column("email") is not None
    assert masked.index.tolist() == [7, 7, 3, 3]
