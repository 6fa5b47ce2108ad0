"""Properties of masking checked with hypothesis: no raw value survives, the rest is untouched,
and masking twice changes nothing."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lgpd_tasks.masking import Masker, MaskingRules
from lgpd_tasks.masking.columnar import scrub_strings
from lgpd_tasks.masking.detect import FULL_WIDTH
from lgpd_tasks.masking.text import EMAIL_RE2, PHONE_RE2, TextScrubber
from lgpd_tasks.masking.validators import cnpj_check_digits, cpf_check_digits, luhn_ok

ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
KEY = b"property-test-key-0123456789"


@st.composite
def cpfs(draw: st.DrawFn) -> str:
    base = draw(st.text("0123456789", min_size=9, max_size=9).filter(lambda b: len(set(b)) > 1))
    d = base + cpf_check_digits(base)
    style = draw(
        st.sampled_from(["{}.{}.{}-{}", "{}{}{}{}", "{} {} {} {}", "{}.{}.{}.{}", "{}.{}.{}/{}"])
    )
    return style.format(d[:3], d[3:6], d[6:9], d[9:])


@st.composite
def cnpjs(draw: st.DrawFn) -> str:
    base = draw(st.text(ALNUM, min_size=12, max_size=12).filter(lambda b: len(set(b)) > 1))
    d = base + cnpj_check_digits(base)
    if draw(st.booleans()):
        return f"{d[:2]}.{d[2:5]}.{d[5:8]}/{d[8:12]}-{d[12:]}"
    return d


@st.composite
def cards(draw: st.DrawFn) -> str:
    body = draw(st.sampled_from("3456")) + draw(st.text("0123456789", min_size=14, max_size=14))
    check = next(str(c) for c in range(10) if luhn_ok(body + str(c)))
    return body + check


emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[a-zçãéñ][a-z0-9._çãéñ]{0,10}[a-z0-9ú]", fullmatch=True),
    st.from_regex(r"[a-zã][a-z0-9-]{0,8}[a-zé]", fullmatch=True),
    st.sampled_from(["com", "com.br", "gov.br", "org", "рф"]),
)
TO_FULL_WIDTH = str.maketrans("0123456789@.-/", "０１２３４５６７８９＠．－／")
safe_words = st.text(alphabet="abcdefghij klmnop", min_size=0, max_size=30)
pii_values = st.one_of(cpfs(), cnpjs(), cards(), emails)


def column(values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str | None]]:
    return st.lists(st.one_of(values, st.none()), min_size=30, max_size=60).filter(
        lambda vs: sum(v is not None for v in vs) >= 20
    )


frames = st.fixed_dictionaries(
    {
        "x_cpf": column(cpfs()),
        "x_cnpj": column(cnpjs()),
        "x_card": column(cards()),
        "x_mail": column(emails),
        "x_note": column(st.tuples(safe_words, pii_values, safe_words).map(" ".join)),
        "keep": column(safe_words),
    }
).map(lambda d: pd.DataFrame({k: pd.Series(v[:30], dtype="str") for k, v in d.items()}))

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(df=frames, strategy=st.sampled_from(["redact", "partial", "hmac", "null"]))
def test_no_raw_value_of_a_detected_type_survives(df: pd.DataFrame, strategy: str) -> None:
    masker = Masker(
        MaskingRules(types={t: strategy for t in ("cpf", "cnpj", "card", "email")}), key=KEY
    )
    masked, report = masker.mask_dataframe(df)
    assert set(report.masked_columns) >= {"x_cpf", "x_cnpj", "x_card", "x_mail", "x_note"}
    for name in ("x_cpf", "x_cnpj", "x_card", "x_mail"):
        raw = {v for v in df[name].dropna() if v}
        assert not raw & set(masked[name].dropna()), name
    for before, after in zip(df["x_note"], masked["x_note"], strict=True):
        if isinstance(before, str):
            pii = before.split(" ")
            assert all(part not in after.split(" ") for part in pii if "@" in part)
    for name in df.columns:
        assert masked[name].isna().tolist() == df[name].isna().tolist() or strategy == "null"


@SETTINGS
@given(df=frames)
def test_untouched_columns_are_byte_identical(df: pd.DataFrame) -> None:
    masked, report = Masker().mask_dataframe(df)
    assert "keep" not in report.masked_columns
    assert masked["keep"].tolist() == df["keep"].tolist() or (
        masked["keep"].isna().equals(df["keep"].isna())
    )
    pd.testing.assert_series_equal(masked["keep"], df["keep"])


@SETTINGS
@given(df=frames, strategy=st.sampled_from(["redact", "partial", "hmac", "null"]))
def test_masking_twice_changes_nothing(df: pd.DataFrame, strategy: str) -> None:
    masker = Masker(
        MaskingRules(types={t: strategy for t in ("cpf", "cnpj", "card", "email")}), key=KEY
    )
    once, _ = masker.mask_dataframe(df)
    twice, report = masker.mask_dataframe(once)
    pd.testing.assert_frame_equal(once, twice)
    assert report.cells_masked == 0


@SETTINGS
@given(text=st.tuples(safe_words, cpfs(), safe_words, cnpjs(), safe_words).map(" ".join))
def test_free_text_loses_every_validated_identifier(text: str) -> None:
    out = Masker().mask_text(text)
    assert out.count("[CPF]") == 1
    assert out.count("[CNPJ]") == 1
    assert Masker().mask_text(out) == out


def _row_wise(values: list[str | None]) -> list[str | None]:
    """The reference for Arrow columns: e-mails and phones in RE2, then Python's spans."""
    scrubber = TextScrubber()
    out: list[str | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        if re.search(FULL_WIDTH, value):
            out.append(scrubber(value))  # full-width spellings are read whole, half-width
            continue
        value = re.sub(EMAIL_RE2, "[EMAIL]", value)
        value = re.sub(PHONE_RE2, r"\1[PHONE]\2", value)
        out.append(scrubber.digits_only(value))
    return out


invalid_numbers = st.one_of(
    st.text("0123456789", min_size=11, max_size=16),
    st.sampled_from(["123.456.789-00", "11.222.333/0001-82", "4111 1111 1111 1112"]),
)
fragments = st.one_of(
    cpfs(),
    cnpjs(),
    cards(),
    emails,
    invalid_numbers,
    st.one_of(cpfs(), emails, invalid_numbers).map(lambda v: v.translate(TO_FULL_WIDTH)),
    st.sampled_from(["(11) 98765-4321", "+55 21 3456-7890", "pedido 7", "Nº", ".", "-", "/"]),
    st.text(alphabet="abcXYZ .,;:-/()+éã", min_size=0, max_size=8),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.one_of(st.none(), st.lists(fragments, min_size=1, max_size=4).map("".join)),
        min_size=1,
        max_size=40,
    ),
    separator=st.sampled_from(["", " ", ".", "-", "a"]),
)
def test_free_text_column_wise_equals_row_wise(values: list[str | None], separator: str) -> None:
    values = [v if v is None else v.replace(" ", separator or " ", 1) for v in values]
    array = pa.array(values, pa.large_string())
    expected = _row_wise(values)
    scrubbed, changed = scrub_strings(pa.chunked_array([array]), TextScrubber())
    assert scrubbed.to_pylist() == expected
    assert changed == sum(1 for a, b in zip(values, expected, strict=True) if a != b)
