"""``hmac`` columns hashed by a helper process while a result is fetched give the same tokens.

The helper (lgpd_tasks.masking.hmac_worker) only ever saves time: the masker looks its
messages up by exact bytes and hashes what is missing, so spellings the helper normalises
differently, values it never saw, a helper that dies and digests made with another key all
end in the tokens the masker computes alone.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from faker import Faker

from lgpd_tasks.audit import AuditStore
from lgpd_tasks.connection import connect
from lgpd_tasks.helper_process import ask_helper
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker, MaskingRules
from lgpd_tasks.masking.prefetch import BATCH_ROWS, START_AFTER, HmacPrefetch
from lgpd_tasks.masking.strategies import HmacKey, KnownDigests
from lgpd_tasks.policy import parse_policy

KEY = b"prefetch-test-key-not-secret"
RULES = MaskingRules(
    columns={"cpf": "hmac", "telefone": "hmac", "nome": "redact"}, hmac_helper=True
)
WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)
SPARE_CORE = HmacPrefetch.spare_core
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")

POLICY = """\
version: 1
dialect: {dialect}
purposes:
  report:
    legal_basis: legitimate_interest
    retention: 180d
scopes:
  extract:
    purpose: report
    read:
      {schema}people: [id, nome, cpf, telefone]
masking:
  columns: {{cpf: hmac, telefone: hmac, nome: redact}}
  key_env: LGPD_MASKING_KEY
  hmac_helper: true
"""


@pytest.fixture(autouse=True)
def _spare_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper starts only when the load average leaves a core free; these tests see one."""
    monkeypatch.setattr(HmacPrefetch, "spare_core", staticmethod(lambda: True))


def _people(count: int) -> list[tuple[Any, ...]]:
    """Rows in every spelling the masker normalises: dotted, bare, full-width, spaced."""
    fake = Faker("pt_BR")
    Faker.seed(7)
    rows: list[tuple[Any, ...]] = []
    for i in range(count):
        cpf = fake.cpf()
        if i % 5 == 1:
            cpf = cpf.replace(".", "").replace("-", "")
        elif i % 5 == 2:
            cpf = cpf.translate(FULL_WIDTH)  # the helper keeps no such digit: a miss
        elif i % 5 == 3:
            cpf = cpf.replace(".", " ").replace("-", "\u00a0")
        rows.append((i, fake.name(), None if i % 97 == 0 else cpf, fake.phone_number()))
    rows[5] = (5, "Ana", "123.456.789-09\nsegunda linha", rows[5][3])  # a separator inside
    return rows


def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=["id", "nome", "cpf", "telefone"])


def _prefetched(masker: Masker, rows: list[tuple[Any, ...]]) -> HmacPrefetch:
    prefetch = masker.hmac_prefetch(["id", "nome", "cpf", "telefone"])
    assert prefetch is not None
    for start in range(0, len(rows), BATCH_ROWS):
        prefetch.feed(rows[start : start + BATCH_ROWS])
    return prefetch


def test_prefetched_tokens_are_the_masker_s_own() -> None:
    masker = Masker(RULES, key=KEY)
    rows = _people(START_AFTER + 2 * BATCH_ROWS)
    with _prefetched(masker, rows) as prefetch:
        assert prefetch.started
        known = prefetch.known()
        assert known is not None
        masked, report = masker.mask_dataframe(_frame(rows), known=prefetch.known)
    alone, alone_report = masker.mask_dataframe(_frame(rows))
    pd.testing.assert_frame_equal(masked, alone)
    assert report == alone_report
    assert not any(c.isdigit() for c in repr(known)), "a repr (a log, a traceback) shows no CPF"
    # the helper saw the batches after the first START_AFTER rows, in their ASCII spellings
    tokens = {m for m in known.messages.to_pylist() if m.startswith("cpf:")}
    assert len(tokens) > BATCH_ROWS
    assert all(m[4:].isdigit() and m[4:].isascii() for m in tokens)
    assert masked["cpf"].dropna().str.fullmatch("hmac:cpf:[0-9a-f]{24}").all()


def test_a_helper_that_dies_costs_only_time() -> None:
    masker = Masker(RULES, key=KEY)
    rows = _people(START_AFTER + BATCH_ROWS)
    with _prefetched(masker, rows) as prefetch:
        process = prefetch._process
        assert process is not None
        process.kill()
        process.wait()
        assert prefetch.known() is None
        masked, _ = masker.mask_dataframe(_frame(rows), known=prefetch.known)
    pd.testing.assert_frame_equal(masked, masker.mask_dataframe(_frame(rows))[0])


def test_digests_of_another_key_are_not_taken() -> None:
    masker = Masker(RULES, key=KEY)
    rows = _people(START_AFTER + BATCH_ROWS)
    other = Masker(RULES, key=b"another-key-0123456789")
    with _prefetched(other, rows) as prefetch:
        known = prefetch.known()
    assert known is not None
    assert len(known.messages)
    masked, _ = masker.mask_dataframe(_frame(rows), known=lambda: known)
    pd.testing.assert_frame_equal(masked, masker.mask_dataframe(_frame(rows))[0])
    # digests labelled with an equal key the masker does not hold are not taken either
    forged = KnownDigests(HmacKey(KEY), known.messages, known.digests)
    masked, _ = masker.mask_dataframe(_frame(rows), known=lambda: forged)
    pd.testing.assert_frame_equal(masked, masker.mask_dataframe(_frame(rows))[0])


def test_small_results_and_unhashed_columns_start_no_helper() -> None:
    masker = Masker(RULES, key=KEY)
    with _prefetched(masker, _people(START_AFTER - 1)) as prefetch:
        assert not prefetch.started
        assert prefetch.known() is None
    assert masker.hmac_prefetch(["id", "nome", "email"]) is None
    assert Masker(MaskingRules(columns={"nome": "redact"})).hmac_prefetch(["cpf"]) is None
    # only when asked for: the helper pays off only with a core to spare
    assert Masker(MaskingRules(columns={"cpf": "hmac"}), key=KEY).hmac_prefetch(["cpf"]) is None
    # a renamed column is hashed under its source's rule, so it is prefetched too
    renamed = masker.hmac_prefetch(["doc"], [frozenset({"cpf"})])
    assert renamed is not None
    renamed.close()
    # a type hashed by more than its digits (e-mail) is left to the masker
    email_rules = MaskingRules(columns={"email": "hmac"}, hmac_helper=True)
    assert Masker(email_rules, key=KEY).hmac_prefetch(["email"]) is None


def test_a_busy_machine_starts_no_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HmacPrefetch, "spare_core", staticmethod(lambda: False))
    masker = Masker(RULES, key=KEY)
    rows = _people(START_AFTER + BATCH_ROWS)
    with _prefetched(masker, rows) as prefetch:
        assert not prefetch.started
        assert prefetch.known() is None
        masked, _ = masker.mask_dataframe(_frame(rows), known=prefetch.known)
    pd.testing.assert_frame_equal(masked, masker.mask_dataframe(_frame(rows))[0])
    assert isinstance(SPARE_CORE(), bool)  # the real probe: usable cores and load average


def _spy_on_known(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many digests each query_df took from its helper (the real method runs)."""
    taken: list[int] = []
    real = HmacPrefetch.known

    def known(self: HmacPrefetch) -> KnownDigests | None:
        result = real(self)
        taken.append(0 if result is None else len(result.messages))
        return result

    monkeypatch.setattr(HmacPrefetch, "known", known)
    return taken


@pytest.fixture
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGPD_MASKING_KEY", KEY.decode())


@pytest.mark.usefixtures("_key")
def test_query_df_on_postgres_prefetches_and_masks_alike(
    postgres_dsn: str, pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    rows = _people(START_AFTER + 3 * BATCH_ROWS)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {pg_schema}.people (id int, nome text, cpf text, telefone text)"
        )
        with admin.cursor().copy(f"COPY {pg_schema}.people FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    policy = parse_policy(POLICY.format(dialect="postgres", schema=f"{pg_schema}."))
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    taken = _spy_on_known(monkeypatch)
    sql = f"SELECT id, nome, cpf, telefone FROM {pg_schema}.people ORDER BY id"
    with connect(postgres_dsn, policy=policy, scope="extract", identity=WHO, audit=audit) as conn:
        masked = conn.query_df(sql)
        cur = conn.execute(sql)
        masked_rows = cur.fetchall()
    assert len(taken) >= 2, "query_df and fetchall asked their helper (once per hmac column)"
    assert min(taken) > len(rows) // 2, "the helper hashed the batches"
    masker = Masker(RULES, key=KEY)
    expected, _ = masker.mask_dataframe(_frame(rows))
    pd.testing.assert_frame_equal(masked, expected)
    expected_rows, _ = masker.mask_rows(["id", "nome", "cpf", "telefone"], rows)
    assert masked_rows == expected_rows


@pytest.mark.usefixtures("_key")
def test_query_df_on_sqlite_starts_the_helper_once_the_rows_add_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _people(START_AFTER + 2 * BATCH_ROWS)
    path = tmp_path / "people.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE people (id INTEGER, nome TEXT, cpf TEXT, telefone TEXT)")
    db.executemany("INSERT INTO people VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    policy = parse_policy(POLICY.format(dialect="sqlite", schema=""))
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    taken = _spy_on_known(monkeypatch)
    with connect(
        f"sqlite:///{path}", policy=policy, scope="extract", identity=WHO, audit=audit
    ) as c:
        masked = c.query_df("SELECT id, nome, cpf AS doc, telefone FROM people ORDER BY id")
    assert taken
    assert taken[0] > 0
    expected, _ = Masker(RULES, key=KEY).mask_dataframe(_frame(rows))
    pd.testing.assert_frame_equal(masked, expected.rename(columns={"cpf": "doc"}))


def test_known_digests_are_taken_for_the_very_key() -> None:
    import numpy as np
    import pyarrow as pa

    masker = Masker(RULES, key=KEY)
    key = masker._ctx.hmac_key
    assert key is not None
    marked = KnownDigests(
        key, pa.array(["cpf:52998224725"], pa.large_string()), np.zeros((1, 32), np.uint8)
    )
    frame = pd.DataFrame({"cpf": ["529.982.247-25", "111.444.777-35"]})
    masked, _ = masker.mask_dataframe(frame, known=lambda: marked)
    assert masked["cpf"].tolist()[0] == "hmac:cpf:" + "0" * 24
    assert masked["cpf"].tolist()[1] == masker.mask_dataframe(frame)[0]["cpf"].tolist()[1]


def _digit_rows(count: int) -> list[tuple[Any, ...]]:
    return [(i, "Ana", f"{i:011d}", None) for i in range(count)]


def test_a_helper_whose_answer_is_not_read_ends_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    # the masker asked for the digests, then failed or was interrupted before it read them:
    # the answer (megabytes, more than a pipe holds) has no reader, and closing the helper
    # must end it rather than wait for it and kill it
    masker = Masker(RULES, key=KEY)
    with _prefetched(masker, _digit_rows(200_000)) as prefetch:
        process = prefetch._process
        assert process is not None
        assert process.stdin is not None
        process.stdin.write(b"F")
        process.stdin.flush()
    assert process.returncode == 0, "the helper ended by itself, not killed after a wait"
    assert process.stdout is not None
    assert process.stdout.closed
    assert "Traceback" not in capfd.readouterr().err


def test_ctrl_c_is_left_to_the_task(capfd: pytest.CaptureFixture[str]) -> None:
    # Ctrl-C in a terminal reaches the helper too; the task decides what happens (its
    # own KeyboardInterrupt closes the helper), so the helper carries on meanwhile
    import os
    import signal

    masker = Masker(RULES, key=KEY)
    rows = _digit_rows(START_AFTER + 2 * BATCH_ROWS)
    with _prefetched(masker, rows[: START_AFTER + BATCH_ROWS]) as prefetch:
        process = prefetch._process
        assert process is not None
        first, _ = ask_helper(process)  # it is running: it answered
        assert first.count(b"\n") == 2 * BATCH_ROWS - 1
        os.kill(process.pid, signal.SIGINT)
        prefetch.feed(rows[START_AFTER + BATCH_ROWS :])
        known = prefetch.known()
    assert known is not None
    assert len(known.messages) == BATCH_ROWS
    assert process.returncode == 0
    assert "KeyboardInterrupt" not in capfd.readouterr().err


def test_lookups_match_exact_bytes_chunk_by_chunk() -> None:
    # a result larger than chunk_rows is masked chunk by chunk, each chunk looking its
    # messages up among all the known ones: only a message of the very same bytes takes a
    # known digest (digests forged as zeros show any other match)
    import numpy as np
    import pyarrow as pa

    masker = Masker(replace(RULES, chunk_rows=3_000), key=KEY)
    key = masker._ctx.hmac_key
    assert key is not None
    rows = _digit_rows(10_000)
    real = [f"cpf:{i:011d}" for i in range(0, 10_000, 2)]  # every other row
    lookalikes = [
        "cep:00000000001",  # same length, another tag
        "cpf:0000000000",  # one digit short
        "cpf:000000000011",  # one digit more
        "cpf:00000000003\n",
        "cpf:0000000000\x005",
    ]
    messages = pa.array(real + lookalikes, pa.large_string())
    digests = np.vstack(
        [key.digests(m.encode() for m in real), np.zeros((len(lookalikes), 32), np.uint8)]
    )
    known = KnownDigests(key, messages, digests)
    masked, report = masker.mask_dataframe(_frame(rows), known=lambda: known)
    alone, alone_report = masker.mask_dataframe(_frame(rows))
    pd.testing.assert_frame_equal(masked, alone)
    assert report == alone_report
    assert known.find(pa.array(["cpf:00000000001", *lookalikes])).tolist() == [
        -1,
        5000,
        5001,
        5002,
        5003,
        5004,
    ]
    # Arrow arrays in chunks, on either side, are looked up alike
    chunked = KnownDigests(key, pa.chunked_array([messages[:100], messages[100:]]), digests)
    probe = pa.chunked_array([pa.array(["cpf:00000000004"]), pa.array(lookalikes[:1])])
    assert chunked.find(probe).tolist() == [2, 5000]
