"""The masking engine on DataFrames, DB-API rows and free text."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lgpd_tasks.errors import MaskingError
from lgpd_tasks.masking import (
    Drop,
    Generalize,
    Hmac,
    Masker,
    MaskingRules,
    Null,
    Partial,
    Redact,
    mask_dataframe,
    mask_text,
    strategy_from_spec,
)
from lgpd_tasks.policy import load_policy

KEY = "k" * 32


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LGPD_MASKING_KEY", KEY)
    return "LGPD_MASKING_KEY"


def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "nome": ["Ana Souza", "Bruno Lima", None, "Carla Dias"],
            "cpf": ["529.982.247-25", "52998224725", None, ""],
            "email": ["ana@pf.gov.br", "BRUNO@Example.com", None, "carla@uol.com.br"],
            "cidade": ["Recife", "Natal", "Belém", "Manaus"],
            "observacao": [
                "ligar (11) 98765-4321 hoje",
                "pedido 123.456.789-00",
                None,
                "cpf 529 982 247 25 confirmado",
            ],
            "valor": [10.5, np.nan, 3.0, 7.25],
        }
    )


def test_personal_columns_are_masked_and_others_kept_exactly() -> None:
    df = customers()
    original = df.copy(deep=True)
    masked, report = mask_dataframe(df)
    pd.testing.assert_frame_equal(df, original)
    assert masked["cpf"].tolist()[:2] == ["***.***.***-25", "***.***.***-25"]
    assert masked["email"].tolist()[0] == "***@pf.gov.br"
    assert masked["nome"].tolist()[0] == "[NAME]"
    assert masked["observacao"].tolist()[0] == "ligar [PHONE] hoje"
    assert masked["observacao"].tolist()[1] == "pedido 123.456.789-00"
    assert masked["observacao"].tolist()[3] == "cpf [CPF] confirmado"
    for untouched in ("id", "cidade", "valor"):
        pd.testing.assert_series_equal(masked[untouched], df[untouched])
    assert set(report.masked_columns) == {"nome", "cpf", "email", "observacao"}


def test_nulls_and_empty_strings_stay_as_they_were() -> None:
    masked, _ = mask_dataframe(customers())
    assert masked["cpf"].isna().tolist() == [False, False, True, False]
    assert masked["cpf"].iloc[3] == ""
    assert masked["nome"].isna().tolist() == [False, False, True, False]


def test_object_columns_stay_object_with_none_kept() -> None:
    df = pd.DataFrame({"email": pd.Series(["a@b.com", None], dtype=object)})
    masked, _ = mask_dataframe(df)
    assert masked["email"].dtype == object
    assert masked["email"].tolist() == ["***@b.com", None]


def test_masking_twice_changes_nothing(key_env: str) -> None:
    masker = Masker(MaskingRules(columns={"cpf": "hmac", "cidade": "redact"}))
    once, _ = masker.mask_dataframe(customers())
    twice, report = masker.mask_dataframe(once)
    pd.testing.assert_frame_equal(once, twice)
    assert report.cells_masked == 0


def test_report_holds_no_raw_value() -> None:
    _, report = mask_dataframe(customers())
    text = repr(report.to_dict())
    for raw in ("529.982.247-25", "ana@pf.gov.br", "Ana Souza", "98765-4321"):
        assert raw not in text
    cpf = report.column("cpf")
    assert cpf is not None
    assert (cpf.detected_type, cpf.strategy, cpf.cells_masked, cpf.detected_by) == (
        "cpf",
        "partial",
        2,
        "name",
    )


def test_hmac_is_stable_typed_and_joins_across_spellings(key_env: str) -> None:
    masker = Masker(MaskingRules(columns={"cpf": Hmac()}))
    masked, _ = masker.mask_dataframe(customers())
    first, second = masked["cpf"].iloc[0], masked["cpf"].iloc[1]
    assert first == second
    assert first.startswith("hmac:cpf:")
    assert len(first) == len("hmac:cpf:") + 24
    again, _ = Masker(MaskingRules(columns={"cpf": "hmac"})).mask_dataframe(customers())
    assert again["cpf"].iloc[0] == first


def test_hmac_depends_on_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    df = pd.DataFrame({"cpf": ["529.982.247-25"]})
    monkeypatch.setenv("LGPD_MASKING_KEY", "a" * 20)
    one = Masker(MaskingRules(columns={"cpf": "hmac"})).mask_dataframe(df)[0]["cpf"].iloc[0]
    monkeypatch.setenv("LGPD_MASKING_KEY", "b" * 20)
    two = Masker(MaskingRules(columns={"cpf": "hmac"})).mask_dataframe(df)[0]["cpf"].iloc[0]
    assert one != two


def test_hmac_without_a_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(MaskingError, match=r"masking.columns.cpf.*MY_KEY.*not set"):
        Masker(MaskingRules(columns={"cpf": "hmac"}, key_env="MY_KEY"))


def test_short_hmac_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGPD_MASKING_KEY", "short")
    with pytest.raises(MaskingError, match="too short"):
        Masker(MaskingRules(types={"cpf": "hmac"}))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param("shred", "unknown strategy 'shred'", id="unknown-name"),
        pytest.param({"strategy": "partial", "keep": 3}, "no parameter 'keep'", id="unknown-param"),
        pytest.param({"strategy": "hmac", "length": "x"}, "length", id="bad-param-type"),
        pytest.param({"keep_last": 3}, "'strategy' key", id="no-strategy-key"),
    ],
)
def test_bad_strategy_specs_name_the_problem(spec: object, message: str) -> None:
    with pytest.raises(MaskingError, match=message):
        strategy_from_spec(spec, "masking.columns.cpf")  # type: ignore[arg-type]


def test_generalize_refuses_a_type_it_cannot_coarsen() -> None:
    with pytest.raises(MaskingError, match=r"masking.columns.cpf.*generalize"):
        Masker(MaskingRules(columns={"cpf": "generalize"}))


def test_strategies_by_type() -> None:
    df = pd.DataFrame(
        {
            "cpf": ["529.982.247-25"],
            "cnpj": ["12.ABC.345/01DE-35"],
            "telefone": ["+55 (11) 98765-4321"],
            "cartao": ["4111 1111 1111 1111"],
            "cep": ["01310-100"],
            "ip": ["192.168.10.20"],
            "data_nascimento": ["15/03/1985"],
            "nome": ["Maria da Silva"],
        }
    )
    partial = Masker(MaskingRules(types={t: "partial" for t in ("name", "cep", "birth_date")}))
    out = partial.mask_dataframe(df)[0].iloc[0].to_dict()
    assert out == {
        "cpf": "***.***.***-25",
        "cnpj": "**.***.***/****-35",
        "telefone": "(**) *****-4321",
        "cartao": "**** **** **** 1111",
        "cep": "01310-***",
        "ip": "192.168.*.*",
        "data_nascimento": "**/**/1985",
        "nome": "M*** d*** S***",
    }
    general = Masker(MaskingRules(columns={"data_nascimento": Generalize(), "cep": Generalize()}))
    row = general.mask_dataframe(df)[0].iloc[0]
    assert (row["data_nascimento"], row["cep"]) == ("1985", "01310-***")


def test_datetime_birth_dates_generalise_to_years() -> None:
    df = pd.DataFrame({"data_nascimento": pd.to_datetime(["1985-03-15", None])})
    masked, _ = mask_dataframe(df)
    assert masked["data_nascimento"].tolist()[0] == 1985
    assert masked["data_nascimento"].isna().tolist() == [False, True]


def test_null_and_drop() -> None:
    masker = Masker(MaskingRules(columns={"cpf": Null(), "email": Drop()}, detect=False))
    masked, report = masker.mask_dataframe(customers())
    assert "email" not in masked.columns
    assert masked["cpf"].isna().all()
    assert masked["nome"].tolist() == customers()["nome"].tolist()
    assert report.masked_columns == ("cpf", "email")


def test_detect_off_masks_only_the_listed_columns() -> None:
    masker = Masker(MaskingRules(columns={"cidade": Redact(token="[CIDADE]")}, detect=False))
    masked, _ = masker.mask_dataframe(customers())
    assert masked["cidade"].tolist() == ["[CIDADE]"] * 4
    assert masked["cpf"].tolist()[:2] == customers()["cpf"].tolist()[:2]


def test_policy_columns_match_without_case_accents_or_underscores() -> None:
    masker = Masker(MaskingRules(columns={"Endereço": "redact"}, detect=False))
    df = pd.DataFrame({"endereco": ["Rua A, 10"]})
    assert masker.mask_dataframe(df)[0]["endereco"].iloc[0] == "[ADDRESS]"
    assert masker.missing_columns(["cidade"]) == ["Endereço"]


def test_policy_file_builds_a_masker(key_env: str, tmp_path: Path) -> None:
    policy = load_policy(Path(__file__).parents[2] / "fixtures" / "policy.yaml")
    masker = Masker.from_policy(policy)
    masked, report = masker.mask_dataframe(customers())
    assert masked["cpf"].iloc[0].startswith("hmac:cpf:")
    assert masked["nome"].iloc[0] == "[NAME]"
    assert report.column("cpf") is not None


def test_partial_keep_last_parameter() -> None:
    masker = Masker(MaskingRules(columns={"cpf": Partial(keep_last=4)}))
    assert masker.mask_dataframe(customers())[0]["cpf"].iloc[0] == "***.***.***-4725"


def test_rows_without_personal_columns_come_back_as_the_same_list() -> None:
    rows = [(i, f"cidade {i}", i * 1.5) for i in range(1000)]
    masked, report = Masker().mask_rows(["id", "cidade", "valor"], rows)
    assert masked is rows
    assert report.masked_columns == ()


def test_rows_from_sqlite_are_masked_column_wise(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "crm.db")
    db.execute("CREATE TABLE c (id INTEGER, cpf TEXT, contato TEXT, cidade TEXT)")
    db.executemany(
        "INSERT INTO c VALUES (?, ?, ?, ?)",
        [
            (1, "529.982.247-25", "ana@pf.gov.br", "Recife"),
            (2, None, "bruno@example.com", "Natal"),
        ],
    )
    cursor = db.execute("SELECT id, cpf, contato, cidade FROM c ORDER BY id")
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    masked, report = Masker().mask_rows(names, rows)
    assert masked == [
        (1, "***.***.***-25", "***@pf.gov.br", "Recife"),
        (2, None, "***@example.com", "Natal"),
    ]
    assert report.masked_columns == ("cpf", "contato")


def test_rows_drop_keeps_the_shape_with_nulls() -> None:
    masker = Masker(MaskingRules(columns={"cpf": "drop"}))
    masked, report = masker.mask_rows(["id", "cpf"], [(1, "529.982.247-25")])
    assert masked == [(1, None)]
    assert report.columns[0].strategy == "drop"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("CPF 529.982.247-25.", "CPF [CPF].", id="cpf-formatted"),
        pytest.param("cpf 52998224725 ok", "cpf [CPF] ok", id="cpf-bare"),
        pytest.param("cpf 529 982 247 25", "cpf [CPF]", id="cpf-spaces"),
        pytest.param("cpf 529.982.247.25", "cpf [CPF]", id="cpf-dots"),
        pytest.param("pedido 123.456.789-00", "pedido 123.456.789-00", id="cpf-lookalike"),
        pytest.param("pedido 11111111111", "pedido 11111111111", id="repeated-digits"),
        pytest.param("empresa 11.222.333/0001-81", "empresa [CNPJ]", id="cnpj"),
        pytest.param("empresa 12.ABC.345/01DE-35", "empresa [CNPJ]", id="cnpj-alnum"),
        pytest.param("empresa 12ABC34501DE35!", "empresa [CNPJ]!", id="cnpj-alnum-bare"),
        pytest.param("mail para jose@tce.sp.gov.br", "mail para [EMAIL]", id="email-gov"),
        pytest.param("tel +55 11 98765-4321", "tel [PHONE]", id="phone-intl"),
        pytest.param("tel (21) 3456-7890", "tel [PHONE]", id="phone-landline"),
        pytest.param("card 4111-1111-1111-1111", "card [CARD]", id="card"),
        pytest.param("card 4111-1111-1111-1112", "card 4111-1111-1111-1112", id="card-bad-luhn"),
        pytest.param("versão 3.14 em 2024", "versão 3.14 em 2024", id="no-pii"),
    ],
)
def test_mask_text(text: str, expected: str) -> None:
    assert mask_text(text) == expected


def test_mask_all_cpf_shaped_numbers_when_asked() -> None:
    masker = Masker(MaskingRules(mask_all_cpf_shaped=True))
    assert masker.mask_text("pedido 123.456.789-00") == "pedido [CPF]"


def test_large_frames_are_masked_in_chunks() -> None:
    df = pd.DataFrame({"email": [f"user{i}@example.com" for i in range(1000)], "n": range(1000)})
    masked, report = Masker(MaskingRules(chunk_rows=128)).mask_dataframe(df)
    assert masked["email"].tolist() == ["***@example.com"] * 1000
    assert masked.index.equals(df.index)
    assert report.column("email") is not None
    assert report.cells_masked == 1000


def test_a_non_dataframe_is_refused() -> None:
    with pytest.raises(MaskingError, match="DataFrame"):
        Masker().mask_dataframe([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [8, 23, 24, 64])
def test_hmac_tokens_are_hmac_sha256_of_the_typed_normalised_value(
    key_env: str, length: int
) -> None:
    import hashlib
    import hmac
    import os

    key = os.environ["LGPD_MASKING_KEY"].encode()
    values = ["529.982.247-25", "52998224725", "111.444.777-35", "529.982.247-25"]
    masker = Masker(MaskingRules(columns={"cpf": Hmac(length=length)}))
    masked, _ = masker.mask_dataframe(pd.DataFrame({"cpf": values}))
    expected = [
        "hmac:cpf:"
        + hmac.new(
            key, b"cpf:" + "".join(filter(str.isdigit, v)).encode(), hashlib.sha256
        ).hexdigest()[:length]
        for v in values
    ]
    assert masked["cpf"].tolist() == expected
    rows, _ = masker.mask_rows(["cpf"], [(v,) for v in values])
    assert [r[0] for r in rows] == expected


def test_mask_rows_refuses_rows_of_another_width_and_leaves_the_collector_on() -> None:
    import gc

    with pytest.raises(MaskingError, match="every row must have 2 values"):
        Masker().mask_rows(["id", "cpf"], [(1, "529.982.247-25"), (2,)])
    masked, _ = Masker().mask_rows(["id", "cpf"], [(1, "529.982.247-25"), (2, None)])
    assert masked == [(1, "***.***.***-25"), (2, None)]
    assert gc.isenabled()


def masked_once() -> tuple[Masker, pd.DataFrame]:
    masker = Masker(MaskingRules(columns={"cpf": "partial", "segredo": "redact"}))
    df = pd.DataFrame(
        {
            "cpf": ["529.982.247-25", "111.444.777-35", "390.533.447-05"],
            "cidade": ["Recife", "Natal", "Belém"],
            "nota": ["boa", "ruim", "boa"],
            "obs": pd.Series(["x", "y", "z"], dtype=object),
        }
    )
    masked, _ = masker.mask_dataframe(df)
    return masker, masked


def test_a_frame_the_masker_returned_is_not_masked_twice() -> None:
    masker, masked = masked_once()
    again, report = masker.mask_dataframe(masked)
    assert again["cpf"].tolist() == ["***.***.***-25", "***.***.***-35", "***.***.***-05"]
    assert again["cidade"].tolist() == ["Recife", "Natal", "Belém"]
    (cpf,) = report.columns
    assert (cpf.column, cpf.strategy, cpf.cells_masked) == ("cpf", "partial", 0)
    # and the frame that pass returned is known too
    assert masker.mask_dataframe(again)[1].columns == report.columns


def test_values_written_into_a_masked_frame_afterwards_are_masked() -> None:
    masker, masked = masked_once()
    masked.loc[1, "cpf"] = "111.444.777-35"  # in place, into a column the masker produced
    masked["cidade"] = ["529.982.247-25", "111.444.777-35", "390.533.447-05"]
    again, report = masker.mask_dataframe(masked)
    assert again["cpf"].tolist() == ["***.***.***-25", "***.***.***-35", "***.***.***-05"]
    assert again["cidade"].tolist() == ["***.***.***-25", "***.***.***-35", "***.***.***-05"]
    assert {c.column: c.cells_masked for c in report.columns} == {"cpf": 1, "cidade": 3}


def test_object_columns_renamed_columns_and_other_maskers_get_a_full_pass() -> None:
    masker, masked = masked_once()
    masked.loc[:, "obs"] = ["ana@example.com", "bia@example.com", "caio@example.com"]
    assert masker.mask_dataframe(masked)[0]["obs"].tolist() == ["***@example.com"] * 3
    masker, masked = masked_once()
    masked.columns = ["cpf", "cidade", "segredo", "obs"]  # renamed in place
    assert masker.mask_dataframe(masked)[0]["segredo"].tolist() == ["[OTHER]"] * 3
    _, masked = masked_once()
    other = Masker(MaskingRules(columns={"cidade": "redact"}))
    assert other.mask_dataframe(masked)[0]["cidade"].tolist() == ["[OTHER]"] * 3


def test_maskers_with_equal_rules_and_key_trust_each_others_frames() -> None:
    rules = MaskingRules(columns={"cpf": "hmac"})
    first = Masker(rules, key=b"a" * 32)
    masked, _ = first.mask_dataframe(pd.DataFrame({"cpf": ["529.982.247-25"]}))
    assert Masker(rules, key=b"a" * 32)._trusted_columns(masked)
    assert not Masker(rules, key=b"b" * 32)._trusted_columns(masked)
    assert not Masker(MaskingRules(columns={"cpf": "partial"}))._trusted_columns(masked)


def test_null_and_drop_strategies_null_values_one_by_one() -> None:
    from lgpd_tasks.masking import Drop, Null, PiiType
    from lgpd_tasks.masking.strategies import MaskContext

    values = pd.Series(["529.982.247-25", "111.444.777-35"], dtype="str")
    for strategy in (Null(), Drop()):
        masked = strategy.mask(values, PiiType.CPF, MaskContext())
        assert masked.isna().all()
        assert masked.dtype == values.dtype
        assert list(masked.index) == list(values.index)


def test_mask_frame_masks_the_index_and_refuses_labels_that_would_merge() -> None:
    from lgpd_tasks.errors import LabelsWouldMerge

    masker = Masker()
    frame = pd.DataFrame({"cpf": ["529.982.247-25", "111.444.777-35"], "total": [1, 2]}).set_index(
        "cpf"
    )
    masked, _ = masker.mask_frame(frame)
    assert "529.982.247-25" not in {str(v) for v in masked.index}
    assert list(masked["total"]) == [1, 2]
    pivot = pd.DataFrame({"a@example.com": [1], "b@example.com": [2]})
    with pytest.raises(LabelsWouldMerge, match="without merging"):
        masker.mask_frame(pivot)


def test_mask_frame_keeps_the_index_levels_the_policy_does_not_drop() -> None:
    frame = pd.DataFrame(
        {
            "cidade": ["Recife", "Natal"],
            "cpf": ["529.982.247-25", "111.444.777-35"],
            "total": [1, 2],
        }
    ).set_index(["cidade", "cpf"])
    masked, report = Masker(MaskingRules(columns={"cpf": "drop"})).mask_frame(frame)
    assert list(masked.index.names) == ["cidade"]
    assert list(masked.index) == ["Recife", "Natal"]
    assert list(masked["total"]) == [1, 2]
    assert report.masked_columns == ("cpf",)


def test_labels_holding_personal_data_are_masked_in_frames_and_reports() -> None:
    label = "253.660.082-39"
    df = pd.DataFrame({label: ["ana@pf.gov.br", "bia@pf.gov.br"], "x": [1, 2]})
    _, report = Masker().mask_dataframe(df)
    assert report.masked_columns == ("[CPF]",)
    assert label not in repr(report.to_dict())
    indexed = df.set_index("x").rename_axis("ana@pf.gov.br")
    masked, report = Masker().mask_frame(indexed)
    assert list(masked.columns) == ["[CPF]"]
    assert masked.index.name == "[EMAIL]"
    assert masked["[CPF]"].tolist() == ["***@pf.gov.br", "***@pf.gov.br"]
    assert list(masked.index) == [1, 2]


def test_a_text_column_of_blanks_and_nulls_is_left_as_it_is() -> None:
    """A sample holding only blank strings and nulls once crashed content detection
    (``"".join`` over a None): a guarded fetch of such a column failed."""
    masker = Masker(MaskingRules(columns={"cpf": "partial"}))
    rows = [("  ", "529.982.247-25"), (None, None), ("", "111.444.777-35")]
    masked, report = masker.mask_rows(["observacao", "cpf"], rows)
    assert [r[0] for r in masked] == ["  ", None, ""]
    assert [r[1] for r in masked] == ["***.***.***-25", None, "***.***.***-35"]
    assert report.column("observacao") is None
    frame = pd.DataFrame({"observacao": ["  ", None] * 5_000}, dtype=object)
    out, _ = masker.mask_dataframe(frame)
    assert out["observacao"].tolist() == frame["observacao"].tolist()
