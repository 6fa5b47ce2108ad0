"""Personal data a sample cannot see: a few cells in a long column, cells among codes, the index."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
from faker import Faker

from lgpd_tasks.masking import Masker

fake = Faker("pt_BR")
fake.seed_instance(11)
CPFS = [fake.cpf() for _ in range(30)]


def test_three_cells_of_a_long_free_text_column_are_scrubbed() -> None:
    notes = ["sem observações"] * 100_000
    for i, row in enumerate((333, 5_001, 77_777)):
        notes[row] = f"cliente pediu retorno, CPF {CPFS[i]} e email pessoa{i}@gmail.com"
    masked, report = Masker().mask_dataframe(pd.DataFrame({"obs": notes}))
    assert masked["obs"][5_001] == "cliente pediu retorno, CPF [CPF] e email [EMAIL]"
    assert not masked["obs"].str.contains("@gmail|[0-9]{3}[.][0-9]{3}", regex=True).any()
    column = report.column("obs")
    assert column is not None
    assert (column.cells_masked, column.detected_type) == (3, "text")


def test_rows_of_a_query_with_one_personal_cell_are_scrubbed() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("create table t (id integer, texto text)")
    db.executemany("insert into t values (?, ?)", [(i, "sem observações") for i in range(1000)])
    db.execute("update t set texto = ? where id = 500", (f"cliente {CPFS[0]} email p@gmail.com",))
    cursor = db.execute("select id, texto from t order by id")
    rows, report = Masker().mask_rows([d[0] for d in cursor.description], cursor.fetchall())
    assert rows[500] == (500, "cliente [CPF] email [EMAIL]")
    assert rows[499] == (499, "sem observações")
    assert report.masked_columns == ("texto",)


def test_cpfs_among_product_codes_are_masked() -> None:
    codes = [f"PRD-{i:05d}" for i in range(100)]
    for i in range(0, 100, 5):
        codes[i] = CPFS[i // 5]
    masked, _ = Masker().mask_dataframe(pd.DataFrame({"codigo": codes}))
    out = masked["codigo"].tolist()
    assert [out[i] for i in range(0, 100, 5)] == ["[CPF]"] * 20
    assert out[1:5] == codes[1:5]


def test_bare_cpfs_among_numbered_codes_are_masked() -> None:
    # one cell in ten holds a CPF after a word, the others an order number of the same length:
    # far more validate than chance (one in a hundred), so this is no column of codes
    rng = np.random.default_rng(8)
    cells = [f"pedido {n}" for n in rng.integers(10**10, 10**11 - 1, 180)]
    cells += [f"cliente {cpf.replace('.', '').replace('-', '')}" for cpf in CPFS[:20]]
    order = rng.permutation(len(cells))
    column = [cells[i] for i in order]
    masker = Masker()
    masked, _ = masker.mask_dataframe(pd.DataFrame({"x": column}))
    rows, _ = masker.mask_rows(["x"], [(c,) for c in column])
    for out in (" ".join(masked["x"]), " ".join(r[0] for r in rows)):
        for cpf in CPFS[:20]:
            assert cpf.replace(".", "").replace("-", "") not in out


def test_a_mostly_null_json_column_is_read_whole() -> None:
    rows: list[tuple[object, ...]] = [(i, None) for i in range(300)]
    rows[211] = (211, {"cliente": {"nome": "Maria Souza", "cpf": CPFS[0]}})
    masked, _ = Masker().mask_rows(["id", "dados"], rows)
    assert masked[211][1] == {"cliente": {"nome": "[NAME]", "cpf": "***.***.***-" + CPFS[0][-2:]}}


def test_an_index_of_a_few_cpfs_is_masked() -> None:
    frame = pd.DataFrame({"v": [1, 2, 3]}, index=pd.Index([CPFS[0], CPFS[1], "balcão"]))
    masked, _ = Masker().mask_frame(frame)
    assert masked.index.tolist() == ["[CPF]", "[CPF]", "balcão"]


def test_columns_without_personal_data_are_left_alone_and_unreported() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "cidade": ["Recife", "Natal"] * 500,
            # order codes built on 11 digits: one in a hundred passes a CPF check by chance
            "pedido": [f"PED-{n}" for n in rng.integers(10**10, 10**11 - 1, 1000)],
            # 13 digits after letters: one in fifteen passes Luhn as a card number
            "sku": [f"SKU{n}" for n in rng.integers(10**12, 10**13 - 1, 1000)],
            "data": ["2024-01-05"] * 1000,
            "uuid": [fake.uuid4() for _ in range(1000)],
            "nfe": ["35240112345678000190550010000001231000001234"] * 1000,
        }
    )
    masked, report = Masker().mask_dataframe(frame)
    assert report.columns == ()
    pd.testing.assert_frame_equal(masked, frame)


def test_an_index_level_named_like_a_column_is_planned_by_its_name() -> None:
    frame = pd.DataFrame({"nome": [fake.name() for _ in range(5)], "v": range(5)})
    masked, _ = Masker().mask_frame(frame.set_index("nome", drop=False))
    assert masked.index.tolist() == ["[NAME]"] * 5
    assert masked.index.name == "nome"
    assert masked["nome"].tolist() == ["[NAME]"] * 5


def test_an_unnamed_categorical_column_of_cpfs_is_masked() -> None:
    frame = pd.DataFrame({"doc": pd.Categorical(CPFS[:20]), "uf": pd.Categorical(["PE"] * 20)})
    masked, report = Masker().mask_dataframe(frame)
    assert masked["doc"].tolist() == [f"***.***.***-{c[-2:]}" for c in CPFS[:20]]
    assert report.masked_columns == ("doc",)
    assert isinstance(masked["uf"].dtype, pd.CategoricalDtype)  # nothing in it: unchanged
