"""The scrubber's gate (``SPAN_GATE``): no cell the scrubber would change is ever skipped.

Every text column is scrubbed cell by cell, and only cells the gate selects reach the scrub,
in Python (fetchone, small fetches) and in Arrow (blocks of cells joined end to end). These
tests run the scrubber and the gate over a large generated corpus of every spelling the
other tests use, embedded in free text, and over strings built from the scrubber's own
patterns, and check: scrubber changed the cell => gate selected it.
"""

from __future__ import annotations

import random
import re
import sqlite3
import string
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from faker import Faker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lgpd_tasks.connection import connect
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker
from lgpd_tasks.masking.columnar import GATE_BLOCK_ROWS, candidate_rows, scrub_strings
from lgpd_tasks.masking.text import (
    _SPANS,
    ROW_PREFILTER,
    SPAN_GATE,
    SPAN_GATE_RE,
    TextScrubber,
)
from lgpd_tasks.masking.validators import cnpj_check_digits, cpf_check_digits, luhn_ok
from lgpd_tasks.policy import Policy
from tests.core.masking.test_properties import _row_wise
from tests.core.results import FETCH_WAYS, fetch

CELLS = 20_000
ALNUM = string.digits + string.ascii_uppercase
WIDE = str.maketrans("0123456789@.-/()+", "０１２３４５６７８９＠．－／（）＋")
#: The separators the scrubber reads between a CPF's groups, and before its check digits.
CPF_GROUP = ["", ".", " ", "\u00a0", "-"]
CPF_CHECK = ["", "-", ".", "/", " ", "\u00a0", "\u2010", "\u2011", "\u2012", "\u2013"]
DDDS = ["11", "21", "31", "41", "51", "61", "71", "81", "85", "92", "19", "27"]
NOISE = "0123456789" * 3 + " .-/()+@:,;\u00a0\u2010\u2011\u2012\u2013aZxé"


def _cpf_digits(rng: random.Random) -> str:
    while True:
        base = "".join(rng.choice(string.digits) for _ in range(9))
        if len(set(base)) > 1:
            return base + cpf_check_digits(base)


def _cnpj_chars(rng: random.Random, alphabet: str) -> str:
    while True:
        base = "".join(rng.choice(alphabet) for _ in range(12))
        if len(set(base)) > 1:
            return base + cnpj_check_digits(base)


def _luhn(rng: random.Random, length: int) -> str:
    body = rng.choice("123456") + "".join(rng.choice(string.digits) for _ in range(length - 2))
    return body + next(str(c) for c in range(10) if luhn_ok(body + str(c)))


def _cpf(rng: random.Random, fake: Faker) -> str:
    d = _cpf_digits(rng)
    style = rng.randrange(5)
    if style == 0:
        return fake.cpf()
    if style == 1:  # the spellings the other tests name
        form = rng.choice(
            [
                "{}.{}.{}-{}",
                "{}{}{}{}",
                "{} {} {} {}",
                "{}.{}.{}.{}",
                "{}.{}.{}/{}",
                "{}-{}-{}-{}",
                "{}\u00a0{}\u00a0{}\u00a0{}",
                "{}.{}.{}\u2013{}",
                "{}.{}.{}\u2011{}",
            ]
        )
        return form.format(d[:3], d[3:6], d[6:9], d[9:])
    # any separator the pattern allows, slot by slot
    a, b = rng.choice(CPF_GROUP), rng.choice(CPF_GROUP)
    return f"{d[:3]}{a}{d[3:6]}{b}{d[6:9]}{rng.choice(CPF_CHECK)}{d[9:]}"


def _cnpj(rng: random.Random, fake: Faker) -> str:
    if rng.random() < 0.3:
        return fake.cnpj()
    d = _cnpj_chars(rng, ALNUM if rng.random() < 0.6 else string.digits)
    dot1, dot2 = rng.choice(["", "."]), rng.choice(["", "."])
    slash, dash = rng.choice(["", "/"]), rng.choice(["", "-"])
    return f"{d[:2]}{dot1}{d[2:5]}{dot2}{d[5:8]}{slash}{d[8:12]}{dash}{d[12:]}"


def _phone(rng: random.Random, fake: Faker) -> str:
    ddd = rng.choice(DDDS)
    mobile = "9" + "".join(rng.choice(string.digits) for _ in range(8))
    land = rng.choice("2345") + "".join(rng.choice(string.digits) for _ in range(7))
    return rng.choice(
        [
            fake.phone_number(),
            fake.cellphone_number(),
            fake.msisdn(),
            f"({ddd}) {mobile[:5]}-{mobile[5:]}",
            f"+55 {ddd} {mobile[:5]}-{mobile[5:]}",
            f"+55{ddd}{mobile}",
            f"({ddd}) 9 {mobile[1:5]}-{mobile[5:]}",
            f"{ddd} 9 {mobile[1:5]}-{mobile[5:]}",
            f"+55 {ddd} 9 {mobile[1:5]}-{mobile[5:]}",
            f"{ddd}.{mobile[:5]}.{mobile[5:]}",
            f"(0{ddd}) {land[:4]}-{land[4:]}",
            f"0{ddd} {land[:4]}-{land[4:]}",
            f"+55 {ddd} {land[:4]}-{land[4:]}",
            f"{ddd}-{land}",
        ]
    )


def _card(rng: random.Random, fake: Faker) -> str:
    if rng.random() < 0.4:
        return str(fake.credit_card_number())
    digits = _luhn(rng, rng.choice([13, 14, 15, 16, 16, 16, 19]))
    groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    return rng.choice([" ", "-", ""]).join(groups)


def _email(rng: random.Random, fake: Faker) -> str:
    return rng.choice(
        [
            fake.email(),
            fake.free_email(),
            f"{fake.user_name()}@{rng.choice(['pf', 'tce.sp', 'inss'])}.gov.br",
            "josé.ñandú@exemplo.com.br",
            "иван@пример.рф",
            "joão@correio.香港",
            "ÇÃO@CORREIO.BR",
        ]
    )


def _other(rng: random.Random, fake: Faker) -> str:
    """Data the scrubber keeps: addresses, dates, amounts, ids, look-alikes."""
    return rng.choice(
        [
            fake.ipv4(),
            fake.ipv6(),
            str(fake.date()),
            fake.date(pattern="%d/%m/%Y"),
            fake.date_time().isoformat(sep=" "),
            fake.postcode(),
            fake.rg(),
            f"{rng.uniform(1, 999999):.2f}",
            f"R$ {rng.randrange(1, 10**7):,}".replace(",", "."),
            str(fake.uuid4()),
            str(rng.randrange(10**12)),
            f"{rng.randrange(9)}.{rng.randrange(20)}.{rng.randrange(99)}",
            f"{_cpf_digits(rng)[:9]}{rng.randrange(100):02d}",  # CPF-shaped, mostly invalid
        ]
    )


def _noise(rng: random.Random) -> str:
    return "".join(rng.choice(NOISE) for _ in range(rng.randrange(1, 40)))


MAKERS: list[Callable[[random.Random, Faker], str]] = [_cpf, _cnpj, _phone, _card, _email, _other]


def _cell(rng: random.Random, fake: Faker) -> str:
    roll = rng.random()
    if roll < 0.15:
        return _noise(rng)
    if roll < 0.2:  # a number the scrubber knows, in random surroundings
        return _noise(rng)[:5] + rng.choice(MAKERS)(rng, fake) + _noise(rng)[:5]
    if roll < 0.25:
        return rng.choice(MAKERS)(rng, fake)  # a whole cell
    words = fake.sentence(nb_words=rng.randrange(3, 10)).rstrip(".").split()
    for _ in range(rng.randrange(1, 4)):
        value = rng.choice(MAKERS)(rng, fake)
        glue = rng.choice(["", " ", " ", " ", ".", "-", "/", ":", "(", "a", "7", "+"])
        words.insert(rng.randrange(len(words) + 1), glue + value + rng.choice(["", ".", ",", ")"]))
    cell = " ".join(words)
    return cell.translate(WIDE) if rng.random() < 0.05 else cell


@pytest.fixture(scope="module")
def cells() -> list[str]:
    fake = Faker("pt_BR")
    fake.seed_instance(20260411)
    rng = random.Random(41)
    return [_cell(rng, fake) for _ in range(CELLS)]


def _arrow_gate(values: list[str]) -> list[bool]:
    rows = candidate_rows(pa.array(values, pa.large_string()))
    return [False] * len(values) if rows is None else rows.tolist()


@pytest.mark.parametrize("all_cpf_shaped", [False, True])
def test_every_cell_the_scrubber_changes_passes_the_gate(
    cells: list[str], all_cpf_shaped: bool
) -> None:
    scrubber = TextScrubber(mask_all_cpf_shaped=all_cpf_shaped)
    changed = [scrubber(c) != c for c in cells]
    python = [SPAN_GATE_RE.search(c) is not None for c in cells]
    arrow = _arrow_gate(cells)
    assert [c for c, ch, p in zip(cells, changed, python, strict=True) if ch and not p] == []
    assert [c for c, ch, a in zip(cells, changed, arrow, strict=True) if ch and not a] == []
    assert sum(changed) > CELLS // 3  # the corpus exercises the scrubber


def test_the_gate_turns_away_dates_amounts_postcodes_and_short_numbers() -> None:
    fake = Faker("pt_BR")
    fake.seed_instance(5)
    values = [
        *(str(fake.date()) for _ in range(50)),
        *(fake.date(pattern="%d/%m/%Y") for _ in range(50)),
        *(fake.date_time().isoformat(sep=" ") for _ in range(50)),
        *(f"{n * 7919 % 99999:05d}-{n % 999:03d}" for n in range(50)),  # CEPs
        *(f"R$ {n:,.2f}" for n in range(1, 10**7, 199_999)),
        *(f"cidade {i}" for i in range(97)),
        "rua das flores, 1234, apto 56",
        "pedido 1234567 entregue em 2024-01-05 10:30",
    ]
    assert [v for v in values if SPAN_GATE_RE.search(v)] == []
    assert not pc.any(pc.match_substring_regex(pa.array(values), SPAN_GATE)).as_py()


def test_arrow_and_python_read_the_gate_alike_and_blocks_miss_no_row(cells: list[str]) -> None:
    array = pa.array(cells, pa.large_string())
    per_row = pc.match_substring_regex(array, SPAN_GATE).to_pylist()
    assert per_row == [SPAN_GATE_RE.search(c) is not None for c in cells]
    # whatever the alignment of the blocks (slices start anywhere in the buffer)
    for start in (0, 1, GATE_BLOCK_ROWS - 1, 1001):
        part = array.slice(start, CELLS - 2 * start)
        rows = candidate_rows(part)
        assert rows is not None
        assert not [
            i for i, hit in enumerate(per_row[start : start + len(part)]) if hit and not rows[i]
        ]


def test_blocks_without_a_candidate_are_skipped() -> None:
    values = ["cidade 12", "sem observações", "2024-01-05", "R$ 1.234,56"] * 50
    assert candidate_rows(pa.array(values, pa.large_string())) is None
    values[77] = "cliente 529-982-247-25"
    rows = candidate_rows(pa.array(values, pa.large_string()))
    assert rows is not None
    assert rows[77]
    assert rows.sum() == GATE_BLOCK_ROWS


def test_the_column_wise_scrub_reads_every_row_it_read_before(cells: list[str]) -> None:
    """Every row the Arrow scrub's own prefilter selects passes the gate, so the scrub's
    output is what it was without the gate: the row-wise reference, cell for cell."""
    prefilter = re.compile(ROW_PREFILTER)
    assert [c for c in cells if prefilter.search(c) and not SPAN_GATE_RE.search(c)] == []
    values: list[str | None] = [*cells]
    values[::97] = [None] * len(values[::97])
    expected = _row_wise(values)
    for start in (0, 5):  # the second a slice, whose blocks start mid-buffer
        array = pa.array(values, pa.large_string()).slice(start)
        scrubbed, changed = scrub_strings(pa.chunked_array([array]), TextScrubber())
        assert scrubbed.to_pylist() == expected[start:]
        assert changed == sum(
            1 for a, b in zip(values[start:], expected[start:], strict=True) if a != b
        )


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(text=st.from_regex(_SPANS))
def test_any_text_holding_a_span_shape_passes_the_gate(text: str) -> None:
    """Built from the scrubber's own pattern, validated or not: whatever it can match, in
    ASCII or in full-width forms, the gate selects."""
    assert SPAN_GATE_RE.search(text)
    assert SPAN_GATE_RE.search(text.translate(WIDE))
    assert _arrow_gate([text]) == [True]


@SETTINGS
@given(text=st.from_regex(re.compile(ROW_PREFILTER)))
def test_any_text_the_row_prefilter_selects_passes_the_gate(text: str) -> None:
    assert SPAN_GATE_RE.search(text)


# -- rows through a guarded connection ----------------------------------------------------
SPELLINGS = [
    "cliente 529-982-247-25 ligou",
    "CPF 529\u00a0982\u00a0247\u00a025 ok",
    "CPF 529.982.247\u201325 ok",
    "empresa 12ABC345/01DE-35 ativa",
    "empresa 12.ABC.345/01DE-35 ativa",
    "tel (11) 9 8765-4321 ok",
    "ana＠pf．gov．br escreveu",
]


@pytest.mark.parametrize("how", FETCH_WAYS)
def test_every_spelling_is_masked_however_rows_are_fetched(tmp_path: Path, how: str) -> None:
    source = tmp_path / "source.db"
    db = sqlite3.connect(source)
    db.execute("CREATE TABLE notas (id INTEGER, obs TEXT)")
    rows = [(i, "entrega em 3 dias") for i in range(40)]
    for i, text in enumerate(SPELLINGS):
        rows[5 * i + 2] = (5 * i + 2, text)
    db.executemany("INSERT INTO notas VALUES (?, ?)", rows)
    db.commit()
    db.close()
    policy = Policy.from_dict(
        {
            "version": 1,
            "dialect": "sqlite",
            "purposes": {"report": {"legal_basis": "research", "retention": "1d"}},
            "scopes": {"read": {"purpose": "report", "read": {"notas": "*"}}},
        }
    )
    with connect(
        f"sqlite:///{source}",
        policy=policy,
        scope="read",
        identity=TaskIdentity("airflow", "dag", "task"),
        audit=f"sqlite:///{tmp_path}/audit.db",
    ) as conn:
        result = fetch(conn, "SELECT id, obs FROM notas ORDER BY id", how)
    texts = result["obs"].tolist() if how == "query_df" else [r[1] for r in result]
    expected = [Masker().mask_text(t) for _, t in rows]
    assert texts == expected
    assert sum("[" in t for t in texts) == len(SPELLINGS)
