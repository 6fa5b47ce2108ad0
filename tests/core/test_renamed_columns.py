"""A column renamed in SQL is masked under the policy's rule for the column it comes from.

``SELECT nome AS quem`` must not bring names back raw because ``quem`` is no rule's name: the
guard's lineage says where each output column comes from, on SQLite and PostgreSQL, through
aliases, functions, CTEs, subqueries and UNION, whichever way the result is fetched.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from faker import Faker

from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.connection import GuardedConnection, connect
from lgpd_tasks.errors import MaskingError
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker, MaskingRules
from lgpd_tasks.policy import parse_policy
from tests.core.results import FETCH_WAYS, fetch

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
      {schema}customers: [id, nome, cpf, email, cidade]
masking:
  columns: {{cpf: hmac, email: partial, nome: redact}}
  key_env: LGPD_MASKING_KEY
"""

WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)


@pytest.fixture(autouse=True)
def _masking_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret")


def _people() -> list[tuple[int, str, str, str, str]]:
    fake = Faker("pt_BR")
    Faker.seed(11)
    return [(i, fake.name(), fake.cpf(), fake.email(), fake.city()) for i in range(1, 13)]


def _name(v: Any) -> bool:
    return v == "[NAME]"


def _hmac(v: Any) -> bool:
    return isinstance(v, str) and v.startswith("hmac:")


def _partial_email(v: Any) -> bool:
    return isinstance(v, str) and v.startswith("***@")


def _redacted(v: Any) -> bool:
    return v == "[REDACTED]"


def _com(v: Any) -> bool:
    return v == "com"


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


Check = Callable[[Any], bool]


def _anything(v: Any) -> bool:
    return True  # the row as a whole is checked for raw values


#: A CPF rebuilt digit by digit from one CASE per position, each branch a constant.
_DIGIT_BY_DIGIT = " || ' ' || ".join(
    f"CASE substr(cpf, {i}, 1) "
    + " ".join(f"WHEN '{d}' THEN '{d}'" for d in "0123456789")
    + " ELSE '' END"
    for i in range(1, 15)
)

#: A query (``{t}`` is the table) and how each of its result columns must come back.
CASES: list[tuple[str, tuple[Check, ...]]] = [
    (
        "SELECT id, nome AS n, email AS contato, cpf AS doc FROM {t}",
        (_count, _name, _partial_email, _hmac),
    ),
    ("SELECT nome AS responsavel_pedido, nome AS quem FROM {t}", (_name, _name)),
    ("SELECT max(nome) FROM {t}", (_name,)),
    ("SELECT upper(nome) AS u, substr(cpf, 1, 14) AS c FROM {t}", (_name, _hmac)),
    ("SELECT cpf AS cpf_cliente FROM {t}", (_hmac,)),
    (
        "WITH x AS (SELECT nome AS a, cpf AS b FROM {t}) SELECT a AS z, b AS w FROM x",
        (_name, _hmac),
    ),
    ("SELECT q FROM (SELECT email AS q FROM {t}) s", (_partial_email,)),
    ("SELECT nome AS n FROM {t} UNION SELECT email FROM {t}", (_redacted,)),
    ("SELECT nome || ' ' || email AS combo FROM {t}", (_redacted,)),
    ("SELECT * FROM {t}", (_count, _name, _hmac, _partial_email, lambda v: "@" not in v)),
    ("SELECT cidade AS c, count(nome) AS n FROM {t} GROUP BY cidade", (lambda v: True, _count)),
    # VALUES rows and recursive CTEs carry what they read
    ("SELECT (VALUES (c.nome)) AS x FROM {t} c", (_name,)),
    ("SELECT cidade FROM {t} UNION ALL VALUES ((SELECT nome FROM {t} WHERE id = 2))", (_anything,)),
    (
        "WITH RECURSIVE r(a, b, k) AS (SELECT nome, '', 1 FROM {t} "
        "UNION ALL SELECT b, a, k + 1 FROM r WHERE k < 2) SELECT b FROM r WHERE k = 2",
        (_name,),
    ),
    # columns only tested carry no value: a count of e-mails is not an e-mail
    ("SELECT sum(CASE WHEN email LIKE '%@%' THEN 1 ELSE 0 END) AS total FROM {t}", (_count,)),
    ("SELECT count(*) FILTER (WHERE cpf IS NOT NULL) AS preenchidos FROM {t}", (_count,)),
    ("SELECT CASE WHEN cpf IS NULL THEN 'sem' ELSE 'com' END AS tem FROM {t}", (_com,)),
    # a value carried next to a tested column: masked under the most protective of both
    ("SELECT CASE WHEN cpf IS NULL THEN 'sem' ELSE nome END AS quem FROM {t}", (_redacted,)),
    # tests put together rebuild the value: masked as the column they test
    ("SELECT " + _DIGIT_BY_DIGIT + " AS x FROM {t}", (_hmac,)),
]


#: Functions in FROM whose columns carry what their arguments read, and stars next to
#: projections that count (which must not shift the count's exemption onto a name).
SQLITE_CASES: list[tuple[str, tuple[Check, ...]]] = [
    ("SELECT j.value AS v FROM {t} c, json_each(json_array(c.nome)) j", (_name,)),
    ("SELECT j.key AS k FROM {t} c, json_each(json_object(c.nome, 1)) j", (_name,)),
    (
        "SELECT j.*, 1 = 1 AS t, s.* FROM json_each('[1]') j, "
        "(SELECT nome AS a, cidade AS b FROM {t}) s",
        (_anything,) * 11,
    ),
]
POSTGRES_CASES: list[tuple[str, tuple[Check, ...]]] = [
    # arrays, json and records built from a column with a rule: masked under it whole
    ("SELECT array_agg(nome) AS a FROM {t}", (lambda v: set(v) == {"[NAME]"},)),
    ("SELECT json_build_object('k', nome) AS a FROM {t}", (lambda v: v == {"[NAME]": "[NAME]"},)),
    ("SELECT s FROM (SELECT nome FROM {t}) s", (lambda v: tuple(v) == ("[NAME]",),)),
    ("SELECT ARRAY[nome, cidade] AS a FROM {t}", (lambda v: len(v) == 2,)),
    ("SELECT x FROM {t} c, LATERAL (VALUES (c.nome)) v(x)", (_name,)),
    # two functions without an alias: each keeps its own lineage
    ("SELECT unnest FROM {t} c, unnest(ARRAY[c.nome]), generate_series(1, 1)", (_name,)),
    ("SELECT u.x FROM {t} c, unnest(ARRAY[c.nome]) AS u(x)", (_name,)),
    (
        "SELECT j.value FROM {t} c, jsonb_array_elements_text(jsonb_build_array(c.nome)) j(value)",
        (_name,),
    ),
    (
        'SELECT c.cidade::text, * FROM {t} c CROSS JOIN LATERAL unnest(ARRAY[c.nome]) AS "cast"',
        (_anything,) * 7,
    ),
    (
        "SELECT u.*, 1 = 1 AS t, s.* FROM unnest(ARRAY[1]) u, "
        "(SELECT nome AS a, cidade AS b FROM {t}) s",
        (_anything, _anything, _name, _anything),
    ),
]


def _rows(result: Any) -> list[tuple[Any, ...]]:
    if isinstance(result, pd.DataFrame):
        return [tuple(r) for r in result.astype(object).itertuples(index=False)]
    return [tuple(r) for r in result]


def _check_cases(
    conn: GuardedConnection,
    table: str,
    how: str,
    cases: list[tuple[str, tuple[Check, ...]]] = CASES,
) -> None:
    raw = {v for p in _people() for v in p[1:4]}
    for sql, checks in cases:
        rows = _rows(fetch(conn, sql.format(t=table), how))
        assert rows, sql
        for row in rows:
            assert len(row) == len(checks), sql
            assert not any(r in repr(row) for r in raw), (sql, how, row)
            for value, check in zip(row, checks, strict=True):
                assert check(int(value) if hasattr(value, "item") else value), (sql, how, row)


@pytest.fixture
def sqlite_conn(tmp_path: Path) -> Iterator[GuardedConnection]:
    path = tmp_path / "source.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER, nome TEXT, cpf TEXT, email TEXT, cidade TEXT)")
    db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", _people())
    db.commit()
    db.close()
    policy = parse_policy(POLICY.format(dialect="sqlite", schema=""), "policy.yaml")
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    with connect(
        f"sqlite:///{path}", policy=policy, scope="extract", identity=WHO, audit=audit
    ) as c:
        yield c


@pytest.mark.parametrize("how", FETCH_WAYS)
def test_renamed_columns_are_masked_by_their_source_on_sqlite(
    sqlite_conn: GuardedConnection, how: str
) -> None:
    _check_cases(sqlite_conn, "customers", how, CASES + SQLITE_CASES)


@pytest.mark.postgres
def test_renamed_columns_are_masked_by_their_source_on_postgres(
    pg_schema: str, postgres_dsn: str, tmp_path: Path
) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {pg_schema}.customers (id int, nome text, cpf text, email text, cidade text)"
        )
        with admin.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {pg_schema}.customers VALUES (%s, %s, %s, %s, %s)", _people()
            )
    policy = parse_policy(POLICY.format(dialect="postgres", schema=f"{pg_schema}."))
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    with connect(postgres_dsn, policy=policy, scope="extract", identity=WHO, audit=audit) as conn:
        for how in FETCH_WAYS:
            _check_cases(conn, f"{pg_schema}.customers", how, CASES + POSTGRES_CASES)


def test_the_outcome_records_the_source_rule(sqlite_conn: GuardedConnection) -> None:
    sqlite_conn.execute("SELECT cpf AS doc, nome AS quem FROM customers").fetchall()
    audit = sqlite_conn.audit
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.outcome is not None
    masked = record.outcome.details["masked"]
    assert masked["doc"]["strategy"] == "hmac"
    assert masked["quem"]["strategy"] == "redact"


def test_masker_sources_parameter() -> None:
    masker = Masker(MaskingRules(columns={"nome": "redact", "email": "hmac"}), key=b"k" * 16)
    frame = pd.DataFrame({"quem": ["Maria Souza"], "contato": ["maria.souza@gmail.com"]})
    masked, _ = masker.mask_dataframe(frame, sources=[{"nome"}, ["email"]])
    assert masked["quem"].tolist() == ["[NAME]"]
    assert masked["contato"].iloc[0].startswith("hmac:")
    rows, _ = masker.mask_rows(["quem", "x"], [("Maria Souza", 1)], sources=["nome", ()])
    assert rows == [("[NAME]", 1)]
    # several sources masked differently: the most protective, a redaction
    rows, _ = masker.mask_rows(["c"], [("Maria maria@x.com",)], sources=[("nome", "email")])
    assert rows == [("[REDACTED]",)]
    # without sources the label alone decides, as before
    untouched, _ = masker.mask_rows(["quem"], [("Maria Souza",)])
    assert untouched == [("Maria Souza",)]
    with pytest.raises(MaskingError, match="sources"):
        masker.mask_rows(["a", "b"], [(1, 2)], sources=[()])


def test_a_name_rebuilt_from_lengths_is_masked(sqlite_conn: GuardedConnection) -> None:
    """``length(...)`` of anything but a plain column can encode a value: masked."""
    letters = ", ".join(
        f"length(zeroblob(unicode(substr(nome || '                    ', {i}, 1))))"
        for i in range(1, 21)
    )
    raw = {p[1] for p in _people()}
    for how in FETCH_WAYS:
        rows = _rows(fetch(sqlite_conn, f"SELECT char({letters}) AS x FROM customers", how))
        assert rows
        assert all(_name(v) for (v,) in rows), how
        assert not raw & {str(v).strip() for (v,) in rows}


def test_from_items_without_an_alias_keep_their_own_lineage(
    sqlite_conn: GuardedConnection,
) -> None:
    """Two subqueries without an alias share no entry: the first one's name column used to
    drop out of the lineage and come back raw."""
    raw = {p[1] for p in _people()}
    for sql in (
        "SELECT * FROM (SELECT nome AS x FROM customers), (SELECT 1 AS y)",
        "SELECT cidade FROM (SELECT * FROM (SELECT nome AS cidade FROM customers), "
        "(SELECT cidade FROM customers))",
    ):
        for how in FETCH_WAYS:
            rows = _rows(fetch(sqlite_conn, sql, how))
            assert rows, sql
            assert not any(r in repr(rows) for r in raw), (sql, how, rows[:2])


def test_a_column_its_derived_table_does_not_have_is_blocked(
    sqlite_conn: GuardedConnection,
) -> None:
    """PostgreSQL cuts names at 63 bytes: ``s.<63 a>y`` is the ``<63 a>x`` that holds
    ``nome``. A qualified column a derived table does not have is unresolved: blocked."""
    from lgpd_tasks.errors import StatementBlocked

    long = "a" * 63
    for sql in (
        f"SELECT s.{long}y FROM (SELECT nome AS {long}x FROM customers) s",
        f"WITH w AS (SELECT nome AS {long}x FROM customers) SELECT w.{long}y FROM w",
    ):
        assert sqlite_conn.check(sql).action == "block"
        with pytest.raises(StatementBlocked):
            sqlite_conn.execute(sql)
