"""Columns that repeat their values are masked once per distinct value, with the same result.

A city, a status or the e-mails of a join repeat across 100,000 rows; the masker then masks
each distinct value once and spreads the result back. Every cell, null, report count and
type must be what masking row by row gives.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pandas as pd
import pytest
from faker import Faker

from lgpd_tasks.masking import Masker, MaskingRules, engine

KEY = b"distinct-test-key-not-secret"
ROWS = 20_000


def _pool(fake: Faker) -> dict[str, list[object]]:
    """Few distinct values per column, in the spellings the masker meets."""
    emails = [fake.email() for _ in range(40)] + [
        "ana@pf.gov.br; joao@gmail.com",  # two values in one cell: scrubbed, not partial
        "***@gmail.com",  # already masked
        "ａｎａ＠ｐｆ．ｇｏｖ．ｂｒ",  # full width
        "",
        None,
    ]
    cpfs = [fake.cpf() for _ in range(30)] + [fake.cpf().replace(".", "").replace("-", "")]
    notes = [
        "sem observações",
        "ligar para (11) 98765-4321",
        f"CPF {fake.cpf()} confirmado",
        "pedido 1234-5678 entregue",
        "hmac:cpf:0123456789abcdef01234567",
        None,
    ]
    phones = [fake.phone_number() for _ in range(25)] + [None]
    return {
        "email": emails,
        "cpf": [*cpfs, None],
        "observacao": notes,
        "telefone": phones,
        "nome": [fake.name() for _ in range(50)] + [None],
        "cidade": [fake.city() for _ in range(60)],
    }


def _frame(seed: int) -> pd.DataFrame:
    fake = Faker("pt_BR")
    Faker.seed(seed)
    rng = random.Random(seed)
    pool = _pool(fake)
    return pd.DataFrame(
        {name: [rng.choice(values) for _ in range(ROWS)] for name, values in pool.items()}
    ).astype("str")


def _spy_on_encoding(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each call of Arrow's dictionary_encode from the masker (the real one runs)."""
    encoded: list[int] = []
    real = engine.pc.dictionary_encode

    def spy(array: object) -> object:
        encoded.append(len(array))  # type: ignore[arg-type]
        return real(array)

    monkeypatch.setattr(engine.pc, "dictionary_encode", spy)
    return encoded


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "columns",
    [
        {"cpf": "hmac", "email": "partial", "nome": "redact", "telefone": "partial"},
        {"cpf": "partial", "email": "hmac", "telefone": "hmac", "nome": "partial"},
    ],
)
def test_repeated_values_mask_as_row_by_row(
    seed: int, columns: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    masker = Masker(MaskingRules(columns=columns, detect=True), key=KEY)
    frame = _frame(seed)
    encoded = _spy_on_encoding(monkeypatch)
    by_distinct, report = masker.mask_dataframe(frame)
    assert len(encoded) >= frame.shape[1] - 1  # each repeating column was encoded
    monkeypatch.setattr(engine, "_DISTINCT_MIN_ROWS", 10**12)  # row by row
    row_by_row, row_report = masker.mask_dataframe(frame)
    pd.testing.assert_frame_equal(by_distinct, row_by_row)
    assert report == row_report
    assert report.cells_masked > ROWS  # the rules did mask cells
    assert not by_distinct["observacao"].str.contains("98765-4321", regex=False).any()


def test_a_column_of_distinct_values_is_not_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Faker("pt_BR")
    Faker.seed(4)
    frame = pd.DataFrame({"cpf": [fake.cpf() for _ in range(ROWS)]}, dtype="str")
    encoded = _spy_on_encoding(monkeypatch)
    masker = Masker(MaskingRules(columns={"cpf": "partial"}), key=KEY)
    masked, _ = masker.mask_dataframe(frame)
    assert not encoded
    assert masked["cpf"].str.startswith("***.***.***-").all()


def test_values_a_strategy_leaves_as_they_were_count_as_row_by_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # partial keeps an e-mail's domain, so a cell with no "@" comes out as it went in;
    # generalize keeps a year as it is and an address it cannot read: row by row each such
    # cell still counts as masked, and so it does when masked once per distinct value
    fake = Faker("pt_BR")
    Faker.seed(5)
    rng = random.Random(5)
    pools = {
        "email": [fake.email() for _ in range(20)] + ["sem e-mail", "nao informado", None],
        "ip": [fake.ipv4() for _ in range(20)] + ["desconhecido", ""],
        "data_nascimento": [str(rng.randint(1940, 2005)) for _ in range(20)] + ["1985-03-15"],
    }
    frame = pd.DataFrame(
        {name: [rng.choice(pool) for _ in range(ROWS)] for name, pool in pools.items()}
    ).astype("str")
    masker = Masker(
        MaskingRules(
            columns={"email": "partial", "ip": "generalize", "data_nascimento": "generalize"}
        ),
        key=KEY,
    )
    encoded = _spy_on_encoding(monkeypatch)
    by_distinct, report = masker.mask_dataframe(frame)
    assert len(encoded) == 3
    monkeypatch.setattr(engine, "_DISTINCT_MIN_ROWS", 10**12)
    row_by_row, row_report = masker.mask_dataframe(frame)
    pd.testing.assert_frame_equal(by_distinct, row_by_row)
    assert report == row_report
    cells = {c.column: c.cells_masked for c in report.columns}
    assert cells["email"] == int((frame["email"].fillna("") != "").sum())
    # with chunks smaller than the column, each chunk is counted alike
    chunked = Masker(replace(masker.rules, chunk_rows=5_000), key=KEY)
    monkeypatch.setattr(engine, "_DISTINCT_MIN_ROWS", 4_096)
    assert chunked.mask_dataframe(frame)[1] == row_report
