"""The guard on PostgreSQL with the database's own catalogue (a GuardedConnection).

Names PostgreSQL resolves by the table's column order or as whole rows, clauses the guard
once skipped, composite-field assignments and sequence calls: each refused statement is
shown not to run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faker import Faker

from lgpd_tasks.audit import AuditStore
from lgpd_tasks.connection import GuardedConnection, connect
from lgpd_tasks.errors import ScopeViolation, StatementBlocked
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import ALL, parse_policy
from lgpd_tasks.sql import check

WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)

POLICY = """\
version: 1
dialect: postgres
purposes:
  report: {{legal_basis: legitimate_interest, retention: 30d}}
scopes:
  ro:
    purpose: report
    read:
      {schema}.customers: [id, nome, rua]
  rw:
    purpose: report
    read:
      {schema}.customers: [id, nome, rua]
    write:
      {schema}.customers: [nome, rua]
"""


@pytest.fixture
def pg(pg_schema: str, postgres_dsn: str) -> str:
    """customers (cpf and a composite column outside the scopes), secrets and a sequence."""
    import psycopg

    fake = Faker("pt_BR")
    Faker.seed(23)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE TYPE {pg_schema}.endereco AS (rua text, cidade text)")
        admin.execute(
            f"CREATE TABLE {pg_schema}.customers (id int PRIMARY KEY, nome text, cpf text, "
            f"rua text, dados {pg_schema}.endereco)"
        )
        admin.execute(f"CREATE TABLE {pg_schema}.secrets (token text)")
        admin.execute(f"INSERT INTO {pg_schema}.secrets VALUES ('tok')")
        admin.execute(f"CREATE SEQUENCE {pg_schema}.seq")
        with admin.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {pg_schema}.customers VALUES (%s, %s, %s, %s, ROW(%s, %s))",
                [
                    (i, fake.name(), fake.cpf(), fake.street_name(), fake.street_name(), "x")
                    for i in range(1, 4)
                ],
            )
    return pg_schema


def _open(dsn: str, schema: str, tmp_path: Path, scope: str) -> GuardedConnection:
    policy = parse_policy(POLICY.format(schema=schema), "policy.yaml")
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    return connect(dsn, policy=policy, scope=scope, identity=WHO, audit=audit)


@pytest.fixture
def ro(pg: str, postgres_dsn: str, tmp_path: Path) -> Iterator[GuardedConnection]:
    with _open(postgres_dsn, pg, tmp_path, "ro") as guarded:
        yield guarded


@pytest.fixture
def rw(pg: str, postgres_dsn: str, tmp_path: Path) -> Iterator[GuardedConnection]:
    with _open(postgres_dsn, pg, tmp_path, "rw") as guarded:
        yield guarded


def _admin(dsn: str, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(dsn) as admin:
        return list(admin.execute(sql).fetchall())


def _refused_reading(conn: GuardedConnection, sql: str, column: str) -> None:
    """``sql`` is refused for reading ``column`` (its read is recorded, as PostgreSQL does)."""
    decision = conn.check(sql)
    assert decision.blocked
    assert any(r.rule == "read_scope" and r.column == column for r in decision.reasons), (
        decision.summary()
    )
    with pytest.raises(ScopeViolation, match=rf"customers\.{column} is not readable"):
        conn.execute(sql)


@pytest.mark.postgres
def test_alias_column_list_renames_the_table_columns_by_position(
    ro: GuardedConnection, rw: GuardedConnection, pg: str
) -> None:
    # id, nome, cpf, rua, dados: x(a, b, id) makes "id" the cpf column
    _refused_reading(ro, f"SELECT x.id FROM {pg}.customers AS x(a, b, id)", "cpf")
    _refused_reading(ro, f"SELECT id FROM {pg}.customers AS x(a, b, id)", "cpf")
    _refused_reading(
        ro,
        f"SELECT c.id FROM {pg}.customers c JOIN {pg}.customers AS x(a, b, k) ON x.k = c.nome",
        "cpf",
    )
    _refused_reading(
        rw,
        f"UPDATE {pg}.customers SET nome = x.id FROM {pg}.customers AS x(a, b, id) "
        f"WHERE {pg}.customers.id = x.a",
        "cpf",
    )
    # renamed columns the scope grants are read under their new names
    rows = ro.execute(f"SELECT x.a, x.b IS NOT NULL FROM {pg}.customers AS x(a, b) ORDER BY x.a")
    assert rows.fetchall() == [(1, True), (2, True), (3, True)]
    decision = ro.check(f"SELECT x.a FROM {pg}.customers AS x(a, b)")
    assert dict(decision.statements[0].columns_read) == {f"{pg}.customers": {"id"}}


@pytest.mark.postgres
def test_alias_column_list_without_a_catalogue_is_not_understood(
    ro: GuardedConnection, pg: str
) -> None:
    sql = f"SELECT x.a FROM {pg}.customers AS x(a)"
    assert ro.check(sql).allowed  # the connection's catalogue knows the column order
    decision = check(sql, ro.scope)  # without one, "a" could be any column
    assert decision.blocked
    assert [(r.rule, r.column) for r in decision.reasons] == [("read_scope", ALL)]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "clause",
    [
        "ORDER BY (c).cpf DESC",
        "ORDER BY CASE WHEN (c).cpf LIKE '2%' THEN 0 ELSE 1 END",
        "ORDER BY c::text",
        "GROUP BY id, (c).cpf",
        "GROUP BY id HAVING min(c::text) > ''",
    ],
)
def test_whole_row_behind_an_output_alias_is_read(
    ro: GuardedConnection, pg: str, clause: str
) -> None:
    # "c" is both an output alias and the table: inside an expression it is the table's row
    _refused_reading(ro, f"SELECT id AS c FROM {pg}.customers c {clause}", "cpf")


@pytest.mark.postgres
def test_output_alias_as_a_whole_sort_key_runs(ro: GuardedConnection, pg: str) -> None:
    rows = ro.execute(f"SELECT id AS c FROM {pg}.customers c ORDER BY c DESC")
    assert rows.fetchall() == [(3,), (2,), (1,)]
    rows = ro.execute(f"SELECT rua IS NULL AS c, count(*) FROM {pg}.customers c GROUP BY c")
    assert rows.fetchall() == [(False, 3)]
    # a granted field of the whole row is that column only
    rows = ro.execute(f"SELECT (c).id FROM {pg}.customers c ORDER BY 1")
    assert rows.fetchall() == [(1,), (2,), (3,)]


@pytest.mark.postgres
def test_composite_field_assignment_writes_the_composite_column(
    rw: GuardedConnection, pg: str, postgres_dsn: str
) -> None:
    before = _admin(postgres_dsn, f"SELECT dados::text FROM {pg}.customers ORDER BY id")
    for sql in (
        f"UPDATE {pg}.customers SET dados.rua = 'HACKED' WHERE id = 1",
        f"UPDATE {pg}.customers SET (dados.rua, nome) = ('HACKED', 'x') WHERE id = 1",
        f"INSERT INTO {pg}.customers AS c (nome, rua) VALUES ('x', 'y') "
        "ON CONFLICT (id) DO UPDATE SET dados.cidade = 'HACKED'",
    ):
        decision = rw.check(sql)
        assert decision.statements[0].columns_written[f"{pg}.customers"] >= {"dados"}
        with pytest.raises(ScopeViolation, match=r"customers\.dados is not writable"):
            rw.execute(sql)
    assert _admin(postgres_dsn, f"SELECT dados::text FROM {pg}.customers ORDER BY id") == before
    # the granted column itself stays writable
    rw.execute(f"UPDATE {pg}.customers SET rua = 'Rua Nova' WHERE id = 1")
    rw.commit()
    assert _admin(postgres_dsn, f"SELECT rua FROM {pg}.customers WHERE id = 1") == [("Rua Nova",)]


@pytest.mark.postgres
def test_sequence_calls_are_refused_and_do_not_run(
    ro: GuardedConnection, rw: GuardedConnection, pg: str, postgres_dsn: str
) -> None:
    state = f"SELECT last_value, is_called FROM {pg}.seq"
    before = _admin(postgres_dsn, state)
    union = f"SELECT id FROM {pg}.customers UNION SELECT id FROM {pg}.customers"
    for conn, sql in (
        (ro, f"SELECT nextval('{pg}.seq')"),
        (ro, f"SELECT * FROM ROWS FROM (setval('{pg}.seq', 77)) AS r"),
        (
            ro,
            f"SELECT o.id FROM {pg}.customers o JOIN ROWS FROM (nextval('{pg}.seq')) AS r ON true",
        ),
        (ro, f"{union} LIMIT (SELECT setval('{pg}.seq', 77))"),
        (ro, f"{union} ORDER BY id OFFSET (SELECT nextval('{pg}.seq')) - 1"),
        (ro, f"(SELECT id FROM {pg}.customers) LIMIT (SELECT setval('{pg}.seq', 77))"),
        (
            ro,
            f"SELECT id FROM {pg}.customers TABLESAMPLE BERNOULLI ((SELECT setval('{pg}.seq', 77)))",
        ),
        (rw, f"UPDATE {pg}.customers SET nome = nextval('{pg}.seq')::text WHERE id = 1"),
    ):
        with pytest.raises(StatementBlocked, match="side_effect_function"):
            conn.execute(sql)
    assert _admin(postgres_dsn, state) == before


@pytest.mark.postgres
def test_hidden_clauses_are_walked_and_do_not_run(
    ro: GuardedConnection, pg: str, postgres_dsn: str
) -> None:
    oid = 10_000_000 + int(pg.removeprefix("t_")[:6], 16)  # a large object no one made
    lo_count = f"SELECT count(*) FROM pg_largeobject_metadata WHERE oid = {oid}"
    assert _admin(postgres_dsn, lo_count) == [(0,)]
    secret_table = f"table {pg}.secrets is not readable"
    for sql, expected in (
        (
            f"SELECT id FROM {pg}.customers UNION SELECT id FROM {pg}.customers LIMIT (SELECT "
            f"lo_from_bytea({oid}, convert_to(token, 'UTF8'))::int - {oid - 2} FROM {pg}.secrets)",
            "side_effect_function",
        ),
        (
            f"SELECT id FROM {pg}.customers UNION SELECT id FROM {pg}.customers "
            f"LIMIT (SELECT ascii(token) FROM {pg}.secrets)",
            secret_table,
        ),
        (
            f"SELECT * FROM ROWS FROM (jsonb_each_text((SELECT to_jsonb(s) FROM {pg}.secrets s))) "
            "AS r",
            secret_table,
        ),
        (
            f"SELECT id FROM {pg}.customers WHERE id IN ((SELECT id FROM {pg}.customers) "
            f"LIMIT (SELECT ascii(token) FROM {pg}.secrets))",
            secret_table,
        ),
        (
            f"SELECT id FROM {pg}.customers TABLESAMPLE BERNOULLI "
            f"((SELECT ascii(token) FROM {pg}.secrets))",
            secret_table,
        ),
        (f"SELECT c.id FROM ({pg}.customers c JOIN {pg}.secrets s ON true)", secret_table),
        (f"SELECT * FROM ({pg}.customers c JOIN {pg}.customers d ON true)", "customers.cpf"),
    ):
        with pytest.raises(StatementBlocked, match=expected):
            ro.execute(sql)
    assert _admin(postgres_dsn, lo_count) == [(0,)]
    # the same shapes over granted data run
    rows = ro.execute(
        f"(SELECT id FROM {pg}.customers) UNION SELECT id FROM {pg}.customers ORDER BY id LIMIT 2"
    )
    assert rows.fetchall() == [(1,), (2,)]
    rows = ro.execute(
        f"SELECT c.id, d.id FROM ({pg}.customers c JOIN {pg}.customers d ON d.id = c.id) "
        "ORDER BY 1 LIMIT 1"
    )
    assert rows.fetchall() == [(1, 1)]
