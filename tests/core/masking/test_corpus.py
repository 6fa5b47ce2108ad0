"""Detection quality on a ground-truth corpus: Faker pt_BR plus generators for every format.

Precision and recall are computed per type (cells for typed columns, spans for free text)
and printed; recall on validated CPF, CNPJ, e-mail and card must be 100%, and no column of
valid-looking identifiers that are not personal data may change.
"""

from __future__ import annotations

import random
import string
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from faker import Faker

from lgpd_tasks.masking import Masker, MaskingRules
from lgpd_tasks.masking.validators import (
    cnpj_check_digits,
    cpf_check_digits,
    is_valid_cnpj,
    is_valid_cpf,
    luhn_ok,
)

ROWS = 400
ALNUM = string.digits + string.ascii_uppercase


def cpf(rng: random.Random) -> str:
    while True:
        base = "".join(rng.choice(string.digits) for _ in range(9))
        if base != base[0] * 9:
            return base + cpf_check_digits(base)


def cpf_spelled(rng: random.Random) -> str:
    d = cpf(rng)
    style = rng.randrange(4)
    if style == 0:
        return f"{d[:3]}.{d[3:6]}.{d[6:9]}-{d[9:]}"
    if style == 1:
        return d
    if style == 2:
        return f"{d[:3]} {d[3:6]} {d[6:9]} {d[9:]}"
    return f"{d[:3]}.{d[3:6]}.{d[6:9]}.{d[9:]}"


def cpf_lookalike(rng: random.Random) -> str:
    """Eleven digits, formatted like a CPF, whose check digits are wrong."""
    d = cpf(rng)
    wrong = f"{(int(d[9]) + 1 + rng.randrange(9)) % 10}{d[10]}"
    return f"{d[:3]}.{d[3:6]}.{d[6:9]}-{wrong}"


def cnpj_alnum(rng: random.Random, formatted: bool) -> str:
    while True:
        base = "".join(rng.choice(ALNUM) for _ in range(12))
        if any(c.isalpha() for c in base):
            break
    d = base + cnpj_check_digits(base)
    return f"{d[:2]}.{d[2:5]}.{d[5:8]}/{d[8:12]}-{d[12:]}" if formatted else d


def card(rng: random.Random) -> str:
    while True:
        digits = rng.choice("3456") + "".join(rng.choice(string.digits) for _ in range(15))
        if luhn_ok(digits):
            groups = [digits[i : i + 4] for i in range(0, 16, 4)]
            return rng.choice([" ", "-", ""]).join(groups)


def mobile(rng: random.Random) -> str:
    ddd = rng.choice(["11", "21", "31", "41", "51", "61", "71", "81", "85", "92"])
    n = "9" + "".join(rng.choice(string.digits) for _ in range(8))
    style = rng.randrange(3)
    if style == 0:
        return f"({ddd}) {n[:5]}-{n[5:]}"
    if style == 1:
        return f"+55 {ddd} {n[:5]}-{n[5:]}"
    return f"+55{ddd}{n}"


def with_gaps(values: list[str | None], rng: random.Random) -> list[str | None]:
    """Some cells become None, NaN or empty: they are not personal data and must stay."""
    out: list[str | None] = []
    for value in values:
        roll = rng.random()
        out.append(None if roll < 0.04 else "" if roll < 0.07 else value)
    return out


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    seen: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


@pytest.fixture(scope="module")
def corpus() -> tuple[pd.DataFrame, dict[str, str | None], list[list[tuple[str, str | None]]]]:
    """A frame of neutrally named columns, their true types, and the spans of the text column."""
    fake = Faker("pt_BR")
    fake.seed_instance(20260701)
    rng = random.Random(7)
    columns: dict[str, list[str | None]] = {
        "a_cpf": [cpf_spelled(rng) for _ in range(ROWS)],
        "a_cpf_faker": [fake.cpf() for _ in range(ROWS)],
        "a_cnpj": [fake.cnpj() if i % 2 else cnpj_alnum(rng, True) for i in range(ROWS)],
        "a_cnpj_alnum_bare": [cnpj_alnum(rng, False) for _ in range(ROWS)],
        "a_email": [
            fake.free_email()
            if i % 3
            else f"{fake.user_name()}@{rng.choice(['pf', 'tce.sp', 'inss'])}.gov.br"
            for i in range(ROWS)
        ],
        "a_card": [card(rng) if i % 2 else fake.credit_card_number() for i in range(ROWS)],
        "a_phone": [fake.cellphone_number() if i % 2 else mobile(rng) for i in range(ROWS)],
        "a_cep": [f"{rng.randrange(1, 99999):05d}-{rng.randrange(1000):03d}" for _ in range(ROWS)],
        "a_ip": [fake.ipv4() if i % 2 else fake.ipv6() for i in range(ROWS)],
    }
    truth: dict[str, str | None] = {
        "a_cpf": "cpf",
        "a_cpf_faker": "cpf",
        "a_cnpj": "cnpj",
        "a_cnpj_alnum_bare": "cnpj",
        "a_email": "email",
        "a_card": "card",
        "a_phone": "phone",
        "a_cep": "cep",
        "a_ip": "ip",
    }
    for name in list(columns):
        columns[name] = with_gaps(columns[name], rng)
    # Identifiers that look like data but are not personal: they must come out unchanged.
    non_pii: dict[str, list[str | None]] = {
        "b_order_code": [cpf_lookalike(rng) for _ in range(ROWS)],
        "b_order_bare": [
            v
            for v in (
                "".join(rng.choice(string.digits) for _ in range(11)) for _ in range(ROWS * 2)
            )
            if not is_valid_cpf(v)
        ][:ROWS],
        "b_sku": [
            v
            for v in ("".join(rng.choice(ALNUM) for _ in range(14)) for _ in range(ROWS * 2))
            if not is_valid_cnpj(v)
        ][:ROWS],
        "b_invoice_16": [
            v
            for v in (
                "".join(rng.choice(string.digits) for _ in range(16)) for _ in range(ROWS * 2)
            )
            if not luhn_ok(v)
        ][:ROWS],
        "b_uuid": [fake.uuid4() for _ in range(ROWS)],
        "b_product": [fake.catch_phrase() for _ in range(ROWS)],
        "b_city": [fake.city() for _ in range(ROWS)],
        "b_version": [
            f"{rng.randrange(9)}.{rng.randrange(20)}.{rng.randrange(99)}" for _ in range(ROWS)
        ],
        "b_amount": [f"{rng.uniform(1, 99999):.2f}" for _ in range(ROWS)],
        "b_date": [str(fake.date_this_decade()) for _ in range(ROWS)],
    }
    for name, values in non_pii.items():
        columns[name] = with_gaps(values, rng)
        truth[name] = None
    # Free text: each row a sentence with zero to three spans, real or look-alike.
    makers = {
        "cpf": lambda: cpf_spelled(rng),
        "cnpj": lambda: fake.cnpj() if rng.random() < 0.5 else cnpj_alnum(rng, True),
        "email": lambda: fake.free_email() if rng.random() < 0.7 else f"{fake.user_name()}@gov.br",
        "phone": lambda: mobile(rng),
        "card": lambda: card(rng),
        None: lambda: cpf_lookalike(rng),
    }
    spans: list[list[tuple[str, str | None]]] = []
    texts: list[str | None] = []
    for _ in range(ROWS):
        picked = [rng.choice(list(makers)) for _ in range(rng.randrange(4))]
        row_spans = [(makers[kind](), kind) for kind in picked]
        words = fake.sentence(nb_words=8).rstrip(".").split()
        for value, _kind in row_spans:
            words.insert(rng.randrange(len(words) + 1), value)
        spans.append(row_spans)
        texts.append(" ".join(words) + ".")
    columns["c_observacao"] = texts
    truth["c_observacao"] = "text"
    df = pd.DataFrame(columns)
    df.loc[df.index % 50 == 0, "a_email"] = np.nan
    return df, truth, spans


def test_detection_precision_and_recall(
    corpus: tuple[pd.DataFrame, dict[str, str | None], list[list[tuple[str, str | None]]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    df, truth, spans = corpus
    masked, report = Masker(MaskingRules(threshold=0.8)).mask_dataframe(df)
    tallies: dict[str, Tally] = defaultdict(Tally)
    detected = {c.column: c.detected_type for c in report.columns}
    for column, kind in truth.items():
        if kind in (None, "text"):
            continue
        before, after = df[column], masked[column]
        for old, new in zip(before.tolist(), after.tolist(), strict=True):
            if not isinstance(old, str) or not old:
                assert new is old or (pd.isna(new) and pd.isna(old)) or new == old
                continue
            changed = new != old
            tally = tallies[kind]
            if changed and detected.get(column) == kind:
                tally.tp += 1
            elif changed:
                tally.fp += 1
            else:
                tally.fn += 1
    for row, row_spans in zip(masked["c_observacao"].tolist(), spans, strict=True):
        for value, kind in row_spans:
            survived = value in row
            if kind is None:
                # Precision here is the share of look-alikes kept as they were.
                tallies["lookalike"].tp += 1 if survived else 0
                tallies["lookalike"].fp += 0 if survived else 1
            else:
                tally = tallies[f"text:{kind}"]
                tally.tp += 0 if survived else 1
                tally.fn += 1 if survived else 0
    with capsys.disabled():
        print("\n  type            precision  recall   cells")
        for kind, t in sorted(tallies.items()):
            print(f"  {kind:15s} {t.precision:9.3f} {t.recall:7.3f} {t.tp + t.fn + t.fp:7d}")
    for kind in (
        "cpf",
        "cnpj",
        "email",
        "card",
        "text:cpf",
        "text:cnpj",
        "text:email",
        "text:card",
    ):
        assert tallies[kind].recall == 1.0, kind
        assert tallies[kind].precision == 1.0, kind
    for kind in ("phone", "cep", "ip", "text:phone"):
        assert tallies[kind].recall >= 0.95, kind
    assert tallies["lookalike"].fp == 0, (
        "a CPF-shaped order code with wrong check digits was masked"
    )


def test_non_personal_identifier_columns_are_untouched(
    corpus: tuple[pd.DataFrame, dict[str, str | None], list[list[tuple[str, str | None]]]],
) -> None:
    df, truth, _ = corpus
    masked, report = Masker().mask_dataframe(df)
    for column, kind in truth.items():
        if kind is None:
            assert column not in report.masked_columns
            pd.testing.assert_series_equal(masked[column], df[column])


def test_named_columns_are_found_by_name() -> None:
    fake = Faker("pt_BR")
    fake.seed_instance(3)
    df = pd.DataFrame(
        {
            "Nome Completo": [fake.name() for _ in range(20)],
            "endereço": [fake.street_address() for _ in range(20)],
            "Data_Nascimento": [str(fake.date_of_birth()) for _ in range(20)],
            "RG": [fake.rg() for _ in range(20)],
            "CEP": [fake.postcode() for _ in range(20)],
            "telefone_celular": [fake.cellphone_number() for _ in range(20)],
            "nome_produto": [fake.catch_phrase() for _ in range(20)],
        }
    )
    masked, report = Masker().mask_dataframe(df)
    assert {c.column: c.detected_type for c in report.columns} == {
        "Nome Completo": "name",
        "endereço": "address",
        "Data_Nascimento": "birth_date",
        "RG": "rg",
        "CEP": "cep",
        "telefone_celular": "phone",
    }
    for column in report.masked_columns:
        assert not (masked[column] == df[column]).any(), column
    assert masked["nome_produto"].equals(df["nome_produto"])
