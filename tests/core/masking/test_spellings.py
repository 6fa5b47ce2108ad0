"""Spellings of personal data beyond plain ASCII: internationalised e-mail addresses,
full-width digits, and a slash before a CPF's check digits; look-alikes still survive."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from faker import Faker

from lgpd_tasks.masking import Masker, MaskingRules, mask_text
from lgpd_tasks.masking.columnar import scrub_strings
from lgpd_tasks.masking.text import TextScrubber

KEY = b"spelling-test-key-0123456789"
WIDE = str.maketrans("0123456789@.-/", "０１２３４５６７８９＠．－／")


def wide(text: str) -> str:
    return text.translate(WIDE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "Cliente JOSÉ.ÑANDÚ@EXEMPLO.COM.BR reclamou",
            "Cliente [EMAIL] reclamou",
            id="intl-upper",
        ),
        pytest.param("de josé.ñandú0@exemplo.com.br hoje", "de [EMAIL] hoje", id="intl-local"),
        pytest.param("escreva a joão@correio.香港 já", "escreva a [EMAIL] já", id="intl-domain"),
        pytest.param("почта иван@пример.рф", "почта [EMAIL]", id="cyrillic"),
        pytest.param("«ana@pf.gov.br»", "«[EMAIL]»", id="guillemets-kept"),
        pytest.param("e-mail: ana@pf.gov.br — ok", "e-mail: [EMAIL] — ok", id="dash-kept"),
        pytest.param("cpf ２５３.６６０.０８２-３９.", "cpf [CPF].", id="cpf-full-width"),
        pytest.param("cpf ２５３６６００８２３９", "cpf [CPF]", id="cpf-full-width-bare"),
        pytest.param(
            "doc ２５３．６６０．０８２－３９ e 4", "doc [CPF] e 4", id="cpf-full-width-dots"
        ),
        pytest.param(
            "ana＠pf．gov．br e ２５３.６６０.０８２-３９ e 529.982.247-25",
            "[EMAIL] e [CPF] e [CPF]",
            id="wide-and-ascii",
        ),
        pytest.param("cpf 253.660.082/39", "cpf [CPF]", id="cpf-slash"),
        pytest.param("cpf 25366008239/x", "cpf [CPF]/x", id="cpf-bare-then-slash"),
        pytest.param(
            "pedido ２５３.６６０.０８２-３８",
            "pedido ２５３.６６０.０８２-３８",
            id="wide-lookalike",
        ),
        pytest.param("pedido 123.456.789/00", "pedido 123.456.789/00", id="slash-lookalike"),
        pytest.param("nota ３ de ５, preço ¥２０", "nota ３ de ５, preço ¥２０", id="wide-no-pii"),
        pytest.param("empresa 11.222.333/0001-81", "empresa [CNPJ]", id="cnpj-still-cnpj"),
    ],
)
def test_mask_text_spellings(text: str, expected: str) -> None:
    assert mask_text(text) == expected
    # the column-wise path gives the same text
    scrubbed, _ = scrub_strings(
        pa.chunked_array([pa.array([text], pa.large_string())]), TextScrubber()
    )
    assert scrubbed.to_pylist() == [expected]


def test_full_width_and_slashed_cpf_columns_are_found_and_keep_ascii_digits() -> None:
    fake = Faker("pt_BR")
    fake.seed_instance(7)
    cpfs = [fake.cpf() for _ in range(30)]
    df = pd.DataFrame(
        {
            "fw": [wide(c) for c in cpfs],
            "slash": [f"{c[:11]}/{c[12:]}" for c in cpfs],
            "ascii": cpfs,
        }
    )
    masked, report = Masker().mask_dataframe(df)
    expected = [f"***.***.***-{c[-2:]}" for c in cpfs]
    assert masked["fw"].tolist() == expected
    assert masked["slash"].tolist() == expected
    assert {c.column: c.detected_type for c in report.columns} == {
        "fw": "cpf",
        "slash": "cpf",
        "ascii": "cpf",
    }
    hashed, _ = Masker(MaskingRules(types={"cpf": "hmac"}), key=KEY).mask_dataframe(df)
    assert hashed["fw"].tolist() == hashed["ascii"].tolist()
    assert hashed["slash"].tolist() == hashed["ascii"].tolist()
    assert hashed["fw"].nunique() == len(cpfs)


def test_internationalised_email_columns_keep_only_the_domain() -> None:
    values = [f"josé.ñandú{i}@exemplo.com.br" for i in range(25)] + ["ÇÃO@CORREIO.BR"] * 5
    masked, report = Masker().mask_dataframe(pd.DataFrame({"contato": values}))
    assert [c.detected_type for c in report.columns] == ["email"]
    assert masked["contato"].tolist() == ["***@exemplo.com.br"] * 25 + ["***@CORREIO.BR"] * 5


def test_full_width_email_in_an_email_column_is_masked() -> None:
    values = ["ana@pf.gov.br"] * 20 + ["ａｎａ＠ｐｆ．ｇｏｖ．ｂｒ"]
    masked, _ = Masker().mask_dataframe(pd.DataFrame({"email": values}))
    assert masked["email"].iloc[-1] == "***@ｐｆ．ｇｏｖ．ｂｒ"


def test_free_text_columns_with_wide_digits_are_scrubbed_and_the_rest_kept() -> None:
    fake = Faker("pt_BR")
    fake.seed_instance(9)
    notes = [f"Cliente {fake.first_name()} ligou, CPF {fake.cpf()} ok" for _ in range(40)]
    notes[5] = f"Cliente pediu, CPF {wide(fake.cpf())}, pedido ４５６"
    notes[6] = f"Contato {fake.user_name()}.ação@exemplo.com.br até sexta"
    masked, _ = Masker().mask_dataframe(pd.DataFrame({"obs": notes}))
    assert masked["obs"].iloc[5] == "Cliente pediu, CPF [CPF], pedido ４５６"
    assert masked["obs"].iloc[6] == "Contato [EMAIL] até sexta"
    assert masked["obs"].iloc[0].endswith("CPF [CPF] ok")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tel (11) 9 8765-4321 ok", "tel [PHONE] ok"),
        ("tel 11 9 8765-4321 ok", "tel [PHONE] ok"),
        ("tel +55 11 9 8765-4321 ok", "tel [PHONE] ok"),
        ("tel 11.98765.4321 ok", "tel [PHONE] ok"),
        ("CPF 529\u00a0982\u00a0247\u00a025 ok", "CPF [CPF] ok"),
        ("CPF 529.982.247\u201325 ok", "CPF [CPF] ok"),
        ("CPF 529.982.247\u201125 ok", "CPF [CPF] ok"),
        ("CPF 529-982-247-25 ok", "CPF [CPF] ok"),
        # look-alikes stay
        ("pedido 123-456-789-00, versão 1.2.3", "pedido 123-456-789-00, versão 1.2.3"),
        ("R$ 1.234.567,89 em 2024-01-05", "R$ 1.234.567,89 em 2024-01-05"),
        ("chave 35240112345678000190550010000001231000001234", None),
        ("id c3594878-b2db-7c83-6563-9909cfaea8a0", None),
    ],
)
def test_more_phone_and_cpf_spellings(text: str, expected: str | None) -> None:
    want = text if expected is None else expected
    assert mask_text(text) == want
    column = pd.Series([text, "linha sem nada", "outra"] * 4, dtype="str")
    scrubbed, _ = scrub_strings(pa.chunked_array([pa.array(column)]), TextScrubber())
    assert scrubbed.to_pylist()[0] == want
    masked, _ = Masker().mask_dataframe(pd.DataFrame({"obs": column}))
    assert masked["obs"][0] == want
