"""CPFs and CNPJs stored as numbers (an int64 ``documento`` export) are found by their check
digits; row ids, amounts and codes in numeric columns are left alone."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faker import Faker

from lgpd_tasks.masking import Masker, MaskingRules

KEY = b"numeric-test-key-0123456789"


def digits(value: str) -> str:
    return "".join(filter(str.isdigit, value))


@pytest.fixture(scope="module")
def cpfs() -> list[str]:
    fake = Faker("pt_BR")
    fake.seed_instance(41)
    # one CPF with leading zeros, which the number loses
    return [fake.cpf() for _ in range(39)] + ["006.924.533-93"]


@pytest.fixture(scope="module")
def cnpjs() -> list[str]:
    fake = Faker("pt_BR")
    fake.seed_instance(42)
    return [fake.cnpj() for _ in range(40)]


def partial_cpfs(values: list[str]) -> list[str]:
    return [f"***.***.***-{digits(v)[-2:]}" for v in values]


def test_integer_and_float_cpf_and_cnpj_columns_are_masked(
    cpfs: list[str], cnpjs: list[str]
) -> None:
    numbers = [int(digits(c)) for c in cpfs]
    df = pd.DataFrame(
        {
            "chave": numbers,
            "chave_float": [float(n) for n in numbers],
            "chave_nula": pd.array([*numbers[:-1], None], dtype="Int64"),
            "empresa": [int(digits(c)) for c in cnpjs],
            "id": range(1, len(numbers) + 1),
        }
    )
    assert df["chave"].dtype == np.int64
    masked, report = Masker().mask_dataframe(df)
    assert masked["chave"].tolist() == partial_cpfs(cpfs)
    assert masked["chave"].iloc[-1] == "***.***.***-93"
    assert masked["chave_float"].tolist() == partial_cpfs(cpfs)
    assert masked["chave_nula"].tolist()[:-1] == partial_cpfs(cpfs)[:-1]
    assert pd.isna(masked["chave_nula"].iloc[-1])
    assert masked["empresa"].tolist() == [f"**.***.***/****-{digits(c)[-2:]}" for c in cnpjs]
    pd.testing.assert_series_equal(masked["id"], df["id"])
    found = {c.column: (c.detected_type, c.detected_by, c.cells_masked) for c in report.columns}
    assert found == {
        "chave": ("cpf", "content", 40),
        "chave_float": ("cpf", "content", 40),
        "chave_nula": ("cpf", "content", 39),
        "empresa": ("cnpj", "content", 40),
    }
    # the path the Dagster IO manager and the Airflow XCom backend take
    framed, _ = Masker().mask_frame(df)
    assert framed["chave"].tolist() == partial_cpfs(cpfs)


def test_numeric_cpfs_hash_like_their_text(cpfs: list[str]) -> None:
    masker = Masker(MaskingRules(types={"cpf": "hmac"}), key=KEY)
    text, _ = masker.mask_dataframe(pd.DataFrame({"doc": cpfs}))
    numbers, _ = masker.mask_dataframe(pd.DataFrame({"doc": [int(digits(c)) for c in cpfs]}))
    assert numbers["doc"].tolist() == text["doc"].tolist()
    assert all(t.startswith("hmac:cpf:") for t in numbers["doc"])
    # a policy column with a name the engine does not know is typed by its numbers too
    policy = Masker(MaskingRules(columns={"chave": "hmac"}), key=KEY)
    keyed, _ = policy.mask_dataframe(pd.DataFrame({"chave": [int(digits(c)) for c in cpfs]}))
    assert keyed["chave"].tolist() == text["doc"].tolist()


def test_integer_cpfs_in_database_rows_are_masked(cpfs: list[str], tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "src.db")
    db.execute("CREATE TABLE pessoas (id INTEGER, chave INTEGER)")
    db.executemany(
        "INSERT INTO pessoas VALUES (?, ?)",
        [(i, None if i == 3 else int(digits(c))) for i, c in enumerate(cpfs)],
    )
    cursor = db.execute("SELECT id, chave FROM pessoas ORDER BY id")
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    masked, report = Masker().mask_rows(names, rows)
    expected: list[str | None] = [*partial_cpfs(cpfs)]
    expected[3] = None
    assert [r[1] for r in masked] == expected
    assert [r[0] for r in masked] == list(range(len(cpfs)))
    assert report.masked_columns == ("chave",)
    hashed, _ = Masker(MaskingRules(types={"cpf": "hmac"}), key=KEY).mask_rows(names, rows)
    text, _ = Masker(MaskingRules(types={"cpf": "hmac"}), key=KEY).mask_rows(
        ["chave"], [(c,) for c in cpfs]
    )
    assert hashed[-1][1] == text[-1][0]  # leading zeros put back before hashing


def test_ids_amounts_and_codes_in_numeric_columns_are_left_alone() -> None:
    rng = random.Random(5)
    rows = 5000
    df = pd.DataFrame(
        {
            "id": range(1, rows + 1),
            "id_grande": range(10**10, 10**10 + rows),
            "codigo": [rng.randrange(10**10, 10**11) for _ in range(rows)],
            "codigo_14": [rng.randrange(10**13, 10**14) for _ in range(rows)],
            "valor": [round(rng.uniform(1, 10**11), 2) for _ in range(rows)],
            "quantidade": [float(i % 97) for i in range(rows)],
            "ativo": [i % 2 == 0 for i in range(rows)],
        }
    )
    masked, report = Masker().mask_dataframe(df)
    assert report.columns == ()
    pd.testing.assert_frame_equal(masked, df)
    records = list(df.itertuples(index=False, name=None))
    same, report = Masker().mask_rows(list(df.columns), records)
    assert same is records
    assert report.columns == ()


def test_a_float_column_with_fractions_is_not_read_as_identifiers(cpfs: list[str]) -> None:
    values = [float(digits(c)) for c in cpfs]
    values[::2] = [v + 0.5 for v in values[::2]]
    df = pd.DataFrame({"medida": values})
    masked, report = Masker().mask_dataframe(df)
    assert report.columns == ()
    pd.testing.assert_frame_equal(masked, df)


def test_a_small_numeric_result_is_never_read_as_identifiers() -> None:
    # 191, 272, 353 pass the CPF check once zero-padded: a count or a sum must come back
    rows = [(191,)]
    masked, report = Masker().mask_rows(["n"], rows)
    assert masked is rows
    assert not report.columns
    frame = pd.DataFrame({"n": [191, 272, 353]})
    out, _ = Masker().mask_dataframe(frame)
    assert out["n"].tolist() == [191, 272, 353]
