"""GuardedConnection on real SQLite and PostgreSQL: guard, approvals, audit, masking."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from faker import Faker

from lgpd_tasks.approvals import ApprovalStore, Approver, Status
from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.connection import GuardedConnection, connect
from lgpd_tasks.errors import (
    ApprovalDenied,
    ApprovalRequired,
    AuditUnavailable,
    ScopeViolation,
    StatementBlocked,
    StatementFailed,
)
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, parse_policy
from lgpd_tasks.sql import fingerprint, normalize_sql
from tests.core.results import FETCH_WAYS, fetch

POLICY = """\
version: 1
dialect: {dialect}
purposes:
  customer_report:
    legal_basis: legitimate_interest
    retention: 180d
    data_subjects: [customers]
scopes:
  extract:
    purpose: customer_report
    read:
      {schema}customers: [id, nome, cpf, email, cidade]
  load:
    purpose: customer_report
    read:
      {schema}summary: [cidade]
    write:
      {schema}summary: [cidade, clientes]
  purge:
    purpose: customer_report
    read:
      {schema}customers: [id, cidade]
    write:
      {schema}customers: "*"
masking:
  columns: {{cpf: hmac, email: partial, nome: redact}}
  key_env: LGPD_MASKING_KEY
"""

WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)


@pytest.fixture(autouse=True)
def _masking_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret")


def _people(n: int = 20) -> list[tuple[int, str, str, str, str]]:
    fake = Faker("pt_BR")
    Faker.seed(7)
    return [(i, fake.name(), fake.cpf(), fake.email(), fake.city()) for i in range(1, n + 1)]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER, nome TEXT, cpf TEXT, email TEXT, cidade TEXT)")
    db.execute("CREATE TABLE summary (cidade TEXT, clientes INTEGER)")
    db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", _people())
    db.commit()
    db.close()
    return path


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY.format(dialect="sqlite", schema=""), "policy.yaml")


@pytest.fixture
def conn(source: Path, policy: Policy, audit: AuditStore) -> Iterator[GuardedConnection]:
    with connect(
        f"sqlite:///{source}", policy=policy, scope="extract", identity=WHO, audit=audit
    ) as guarded:
        yield guarded


def test_allowed_select_returns_masked_rows_and_is_audited(
    conn: GuardedConnection, audit: AuditStore
) -> None:
    rows = conn.execute("SELECT id, nome, cpf, email, cidade FROM customers ORDER BY id").fetchall()
    raw = _people()
    assert len(rows) == 20
    assert [r[0] for r in rows] == [p[0] for p in raw]
    assert [r[4] for r in rows] == [p[4] for p in raw]  # cidade is not personal
    for masked, original in zip(rows, raw, strict=True):
        assert masked[1] != original[1]
        assert masked[2] != original[2]
        assert original[3].split("@")[1] in masked[3]
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.status == "ok"
    assert record.rows == 20
    assert record.entry.decision == "allow"
    assert record.entry.principal == "airflow:contractor.extract"
    assert record.entry.purpose == "customer_report"
    assert record.entry.legal_basis == "legitimate_interest"
    statement = record.entry.details["statements"][0]
    assert statement["tables_read"] == ["main.customers"]
    assert record.outcome is not None
    assert set(record.outcome.details["masked"]) == {"nome", "cpf", "email"}
    assert audit.verify().ok


def test_no_personal_value_reaches_the_audit(conn: GuardedConnection, audit: AuditStore) -> None:
    person = _people()[3]
    conn.execute("SELECT id FROM customers WHERE cpf = ?", (person[2],)).fetchall()
    conn.execute(f"SELECT id FROM customers WHERE email = '{person[3]}'").fetchall()
    dumped = str([e.to_dict() for e in audit.entries()])
    assert person[2] not in dumped
    assert person[3] not in dumped
    assert "positional" in dumped


def test_out_of_scope_column_is_blocked_before_the_database(
    conn: GuardedConnection, audit: AuditStore
) -> None:
    with pytest.raises(ScopeViolation, match="read_scope") as info:
        conn.execute("SELECT id FROM customers WHERE telefone = '1'")
    assert info.value.scope == "extract"
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.entry.decision == "block"
    assert record.status == "refused"


def test_out_of_scope_table_in_a_subquery_is_blocked(conn: GuardedConnection) -> None:
    with pytest.raises(ScopeViolation):
        conn.execute("SELECT id FROM customers WHERE EXISTS (SELECT 1 FROM summary)")


def test_ddl_is_blocked_and_never_runs(conn: GuardedConnection, source: Path) -> None:
    with pytest.raises(StatementBlocked, match="ddl"):
        conn.execute("DROP TABLE customers")
    assert sqlite3.connect(source).execute("SELECT count(*) FROM customers").fetchone() == (20,)


def test_unparsable_sql_is_blocked(conn: GuardedConnection) -> None:
    with pytest.raises(StatementBlocked):
        conn.execute("SELEKT cpf FROM customers")


def test_write_in_scope_is_audited_with_rowcount(
    source: Path, policy: Policy, audit: AuditStore
) -> None:
    who = TaskIdentity("airflow", "contractor", "load", run_id="manual__1")
    with connect(
        f"sqlite:///{source}", policy=policy, scope="load", identity=who, audit=audit
    ) as c:
        cur = c.executemany(
            "INSERT INTO summary (cidade, clientes) VALUES (?, ?)", [("Recife", 3), ("Natal", 2)]
        )
        assert cur.rowcount == 2
    assert sqlite3.connect(source).execute("SELECT count(*) FROM summary").fetchone() == (2,)
    (record,) = audit.records(EntryFilter(task="load", kind="statement"))
    assert record.rows == 2
    assert record.entry.details["parameters"] == {"batches": 2}


def test_delete_without_where_waits_for_approval_then_runs_once(
    source: Path, policy: Policy, audit: AuditStore
) -> None:
    who = TaskIdentity("airflow", "contractor", "purge", run_id="manual__1", user="maria")
    url = f"sqlite:///{source}"
    with (
        connect(url, policy=policy, scope="purge", identity=who, audit=audit) as c,
        pytest.raises(ApprovalRequired) as info,
    ):
        c.execute("DELETE FROM customers")
    request_id = info.value.request_id
    assert f"lgpd-tasks approvals approve {request_id}" in str(info.value)
    approvals = ApprovalStore(audit)
    assert approvals.get(request_id).status is Status.PENDING
    # asking again finds the same pending request
    with (
        connect(url, policy=policy, scope="purge", identity=who, audit=audit) as c,
        pytest.raises(ApprovalRequired) as again,
    ):
        c.execute("DELETE FROM customers")
    assert again.value.request_id == request_id
    approvals.approve(request_id, Approver("joao"), "staging reset")
    with connect(url, policy=policy, scope="purge", identity=who, audit=audit) as c:
        assert c.execute("DELETE FROM customers").rowcount == 20
    assert approvals.get(request_id).consumed_at is not None
    intents = audit.records(EntryFilter(task="purge", kind="statement", decision="approved"))
    assert intents[0].entry.details["approval_id"] == request_id
    # the approval was used: the same statement needs a new one
    with (
        connect(url, policy=policy, scope="purge", identity=who, audit=audit) as c,
        pytest.raises(ApprovalRequired) as third,
    ):
        c.execute("DELETE FROM customers")
    assert third.value.request_id != request_id


def test_denied_statement_stays_denied(source: Path, policy: Policy, audit: AuditStore) -> None:
    who = TaskIdentity("airflow", "contractor", "purge", run_id="manual__2")
    url = f"sqlite:///{source}"
    with pytest.raises(ApprovalRequired) as info:
        connect(url, policy=policy, scope="purge", identity=who, audit=audit).execute(
            "DELETE FROM customers WHERE 1 = 1"
        )
    ApprovalStore(audit).deny(info.value.request_id, Approver("joao"), "not today")
    with pytest.raises(ApprovalDenied):
        connect(url, policy=policy, scope="purge", identity=who, audit=audit).execute(
            "DELETE FROM customers WHERE 1 = 1"
        )


def test_audit_outage_stops_the_statement(source: Path, policy: Policy, tmp_path: Path) -> None:
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    conn = connect(f"sqlite:///{source}", policy=policy, scope="load", identity=WHO, audit=audit)
    (tmp_path / "audit.db").chmod(0o444)
    audit_ro = AuditStore.from_url(f"sqlite:///file:{tmp_path}/audit.db?mode=ro&uri=true")
    conn.audit = audit_ro
    with pytest.raises(AuditUnavailable, match=r"cannot|readonly"):
        conn.execute("INSERT INTO summary (cidade, clientes) VALUES ('Recife', 1)")
    conn.commit()
    assert sqlite3.connect(source).execute("SELECT count(*) FROM summary").fetchone() == (0,)


def test_database_error_is_scrubbed_and_audited(
    source: Path, policy: Policy, audit: AuditStore
) -> None:
    db = sqlite3.connect(source)
    db.execute("CREATE UNIQUE INDEX one_city ON summary (cidade)")
    db.execute("INSERT INTO summary VALUES ('Recife', 1)")
    db.commit()
    who = TaskIdentity("airflow", "contractor", "load", run_id="manual__1")
    with connect(
        f"sqlite:///{source}", policy=policy, scope="load", identity=who, audit=audit
    ) as conn:
        with pytest.raises(StatementFailed) as info:
            conn.execute("INSERT INTO summary (cidade, clientes) VALUES ('Recife', 2)")
        assert info.value.error_class == "IntegrityError"
    (record,) = audit.records(EntryFilter(task="load", kind="statement"))
    assert record.status == "error"


def test_query_df_returns_a_masked_dataframe(conn: GuardedConnection) -> None:
    df = conn.query_df("SELECT id, cpf, cidade FROM customers")
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["id", "cpf", "cidade"]
    raw_cpfs = {p[2] for p in _people()}
    assert not raw_cpfs & set(df["cpf"])


def test_select_star_expands_to_the_catalogue_and_is_blocked_beyond_the_scope(
    source: Path, policy: Policy, audit: AuditStore
) -> None:
    db = sqlite3.connect(source)
    db.execute("ALTER TABLE customers ADD COLUMN telefone TEXT")
    db.commit()
    with (
        connect(
            f"sqlite:///{source}", policy=policy, scope="extract", identity=WHO, audit=audit
        ) as conn,
        pytest.raises(ScopeViolation, match="telefone"),
    ):
        conn.execute("SELECT * FROM customers")


def test_iteration_and_fetchmany_mask_and_count(conn: GuardedConnection, audit: AuditStore) -> None:
    cur = conn.execute("SELECT cpf FROM customers")
    first = cur.fetchmany(5)
    rest = list(cur)
    assert len(first) + len(rest) == 20
    raw_cpfs = {p[2] for p in _people()}
    assert not raw_cpfs & {r[0] for r in first + rest}
    cur.close()
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.rows == 20


@pytest.mark.postgres
def test_guarded_connection_on_postgres(pg_schema: str, postgres_dsn: str, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {pg_schema}.customers "
            "(id int, nome text, cpf text, email text, cidade text, renda numeric)"
        )
        with admin.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {pg_schema}.customers VALUES (%s, %s, %s, %s, %s, 1000)", _people()
            )
    policy = parse_policy(POLICY.format(dialect="postgres", schema=f"{pg_schema}."))
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    with connect(postgres_dsn, policy=policy, scope="extract", identity=WHO, audit=audit) as conn:
        rows = conn.execute(
            f"SELECT id, cpf FROM {pg_schema}.customers WHERE cidade = %s", ("X",)
        ).fetchall()
        assert rows == []
        rows = conn.execute(f"SELECT id, cpf FROM {pg_schema}.Customers ORDER BY id").fetchall()
        assert len(rows) == 20
        assert not {p[2] for p in _people()} & {r[1] for r in rows}
        with pytest.raises(ScopeViolation, match="renda"):
            conn.execute(f"SELECT renda FROM {pg_schema}.customers")
        with pytest.raises(ScopeViolation):
            conn.execute(f"SELECT * FROM {pg_schema}.customers")
    statements = audit.records(EntryFilter(kind="statement"))
    assert [r.entry.decision for r in statements] == ["allow", "allow", "block", "block"]
    assert audit.verify().ok


def test_named_parameters_work_and_only_their_names_are_recorded(
    conn: GuardedConnection, audit: AuditStore
) -> None:
    person = _people()[5]
    rows = conn.execute(
        "SELECT id FROM customers WHERE cpf = :cpf AND cidade = :cidade",
        {"cpf": person[2], "cidade": person[4]},
    ).fetchall()
    assert rows == [(person[0],)]
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.entry.details["parameters"] == {"named": ["cidade", "cpf"]}
    assert person[2] not in str(record.to_dict())


@pytest.mark.postgres
def test_a_commit_that_fails_is_recorded_and_scrubbed(
    pg_schema: str, postgres_dsn: str, tmp_path: Path
) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {pg_schema}.summary (cidade text, clientes int, "
            "CONSTRAINT one_city UNIQUE (cidade) DEFERRABLE INITIALLY DEFERRED)"
        )
    policy = parse_policy(POLICY.format(dialect="postgres", schema=f"{pg_schema}."))
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    who = TaskIdentity("airflow", "contractor", "load", run_id="manual__1")
    city = _people()[0][4]
    conn = connect(postgres_dsn, policy=policy, scope="load", identity=who, audit=audit)
    conn.executemany(
        f"INSERT INTO {pg_schema}.summary (cidade, clientes) VALUES (%s, %s)",
        [(city, 1), (city, 2)],
    )
    with pytest.raises(StatementFailed) as info:
        conn.commit()
    conn.close()
    assert city not in str(info.value)
    (failed,) = audit.entries(EntryFilter(kind="transaction"))
    assert failed.decision == "rolled_back"
    assert failed.details["event"] == "commit_failed"
    assert failed.details["sqlstate"] == "23505"
    assert audit.verify().ok


def test_result_labels_carry_no_literal(conn: GuardedConnection, audit: AuditStore) -> None:
    _, nome, cpf, email, _ = _people()[2]
    sql = (
        f"SELECT id, cpf = '{cpf}', coalesce(email, '{email}'), nome LIKE '%{nome}%' "
        "FROM customers ORDER BY id"
    )
    labels = ["id", "cpf = ?", "coalesce(email, ?)", "nome LIKE ?"]
    cur = conn.execute(sql)
    assert [d[0] for d in cur.description] == labels
    assert [d.name for d in cur.description] == labels  # by name too, as psycopg allows
    assert [len(d) for d in cur.description] == [7] * 4
    assert [r[0] for r in cur.fetchall()] == list(range(1, 21))
    df = conn.query_df(sql)
    assert list(df.columns) == labels
    assert df["id"].tolist() == list(range(1, 21))
    first, second = audit.records(EntryFilter(kind="statement"))
    for record in (first, second):
        assert record.outcome is not None
        assert set(record.outcome.details["masked"]) <= set(labels)
        assert "coalesce(email, ?)" in record.outcome.details["masked"]
    dumped = str([e.to_dict() for e in audit.entries()])
    for value in (cpf, email, nome, *[part for part in nome.split() if len(part) > 3]):
        assert value not in dumped


def test_names_given_with_as_are_kept_as_written(conn: GuardedConnection) -> None:
    # a pivot by year or a label with an apostrophe is the author's, not an expression
    _, _, cpf, _, _ = _people()[2]
    sql = (
        'SELECT count(*) AS "2023", count(*) AS "receita 1T24", '
        f"count(*) AS \"cliente's total\", cpf = '{cpf}', '{cpf}' AS \"{cpf}\" FROM customers"
    )
    cur = conn.execute(sql)
    assert [d[0] for d in cur.description] == [
        "2023",
        "receita 1T24",
        "cliente's total",
        "cpf = ?",
        "[CPF]",  # an alias holding personal data is still masked
    ]
    assert cur.fetchall()[0][:3] == (20, 20, 20)


def test_values_in_text_the_parser_cannot_read_stay_out_of_the_audit(
    conn: GuardedConnection, audit: AuditStore
) -> None:
    # SQLite has no $$...$$ strings: the statement is unparsable and blocked, and its words
    # may be values, so the audit keeps only its keywords
    _, nome, cpf, email, _ = _people()[4]
    sql = f"SELECT id FROM customers WHERE nome = $${nome}$$ OR email = $${email}$$ OR cpf = $${cpf}$$"
    with pytest.raises(StatementBlocked) as raised:
        conn.execute(sql)
    dumped = str([e.to_dict() for e in audit.entries()]) + str(raised.value)
    for value in (email, cpf, *[part for part in nome.split() if len(part) > 3]):
        assert value not in dumped


def test_labels_alike_once_masked_are_kept_and_recorded_apart(
    conn: GuardedConnection, audit: AuditStore
) -> None:
    one, other = _people()[0][2], _people()[1][2]
    sql = f"SELECT id, cpf = '{one}', cpf = '{other}', cpf AS x, email AS x FROM customers"
    labels = ["id", "cpf = ?", "cpf = ?", "x", "x"]
    cur = conn.execute(sql)
    assert [d[0] for d in cur.description] == labels
    rows = cur.fetchall()
    assert [len(r) for r in rows] == [5] * 20
    df = conn.query_df(sql)
    assert list(df.columns) == labels
    assert df.shape == (20, 5)
    for record in audit.records(EntryFilter(kind="statement")):
        assert record.outcome is not None
        masked = record.outcome.details["masked"]
        # the same label masked two ways: two entries, never one that misstates either
        assert (masked["x"]["pii_type"], masked["x #2"]["pii_type"]) == ("cpf", "email")
        assert masked["x"]["cells"] == masked["x #2"]["cells"] == 20
        assert one not in str(masked)


@pytest.mark.parametrize("column", ["cpf", "nome"])
def test_a_value_in_double_quotes_is_blocked_and_never_repeated(
    conn: GuardedConnection, audit: AuditStore, column: str
) -> None:
    index = 2 if column == "cpf" else 1
    value, other = _people()[4][index], _people()[5][index]
    sql = f'SELECT nome FROM customers WHERE {column} = "{value}"'
    with pytest.raises(ScopeViolation) as info:
        conn.execute(sql)
    assert str(info.value) == (
        "statement blocked in scope 'extract' by rule read_scope: reference \"?\" cannot be "
        "attributed to a table (a double-quoted name that is no column here; string values "
        "take single quotes)"
    )
    assert [(r.rule, r.column) for r in info.value.reasons] == [("read_scope", "?")]
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.entry.decision == "block"
    normalized = f'SELECT nome FROM customers WHERE {column} = "?"'
    assert record.entry.details["normalized"] == normalized
    assert record.entry.details["statements"][0]["normalized"] == normalized
    # one fingerprint for the statement whatever the value, and it hashes no value
    assert record.entry.fingerprint == fingerprint(normalized)
    assert conn.check(sql.replace(value, other)).fingerprint == record.entry.fingerprint
    dumped = str([e.to_dict() for e in audit.entries()])
    for text in (value, value.lower(), *[p.lower() for p in value.split() if len(p) > 3]):
        assert text not in str(info.value)
        assert text not in dumped


@pytest.mark.parametrize(
    ("sql", "action", "normalized"),
    [
        pytest.param(
            'SELECT nome FROM customers WHERE nome = "{nome}" AND',
            "block",
            'SELECT ? FROM ? WHERE ? = "?" AND',  # unparsable: only keywords stay
            id="unparsable",
        ),
        pytest.param(
            'SELECT nome FROM nosuch WHERE nome = "{nome}"',
            "block",
            'SELECT nome FROM nosuch WHERE nome = "?"',
            id="unknown-table",
        ),
        pytest.param(
            'SELECT id AS "{cpf}" FROM customers',
            "allow",
            'SELECT id AS "[CPF]" FROM customers',
            id="alias",
        ),
    ],
)
def test_values_in_double_quotes_stay_out_of_every_decision(
    conn: GuardedConnection, sql: str, action: str, normalized: str
) -> None:
    _, nome, cpf, _, _ = _people()[6]
    decision = conn.check(sql.format(nome=nome, cpf=cpf))
    assert (decision.action, decision.normalized) == (action, normalized)
    dumped = str(decision.to_dict()).lower()
    assert nome.lower() not in dumped
    assert cpf not in dumped


def test_scrubbing_keeps_real_names_and_fingerprints(conn: GuardedConnection) -> None:
    sql = 'SELECT "cpf", email AS "Contato" FROM customers WHERE "id" = 1'
    decision = conn.check(sql)
    assert decision.action == "allow"
    assert decision.normalized == 'SELECT "cpf", email AS "contato" FROM customers WHERE "id" = ?'
    assert decision.fingerprint == normalize_sql(sql, "sqlite")[1]


@pytest.mark.parametrize("how", FETCH_WAYS)
def test_a_database_error_while_fetching_fails_the_statement(
    conn: GuardedConnection, audit: AuditStore, how: str
) -> None:
    # SQLite computes rows as they are fetched: the second row's json() fails after execute
    sql = "SELECT id, CASE WHEN id > 1 THEN json(nome) END FROM customers"
    with pytest.raises(StatementFailed) as info:
        fetch(conn, sql, how)
    assert str(info.value) == (
        "database failed the statement while its rows were fetched (OperationalError): "
        "malformed JSON"
    )
    assert info.value.error_class == "OperationalError"
    (record,) = audit.records(EntryFilter(kind="statement"))
    assert record.status == "error"
    assert record.outcome is not None
    assert record.outcome.details["error_class"] == "OperationalError"
    assert conn.execute("SELECT count(id) FROM customers").fetchall() == [(20,)]


def test_an_approval_admits_its_own_partition_only(
    source: Path, policy: Policy, audit: AuditStore
) -> None:
    """An approval given for one partition does not run the statement for another one,
    even under the same run id (as a relaunch that continues the gated run carries)."""
    from dataclasses import replace

    text = POLICY.format(dialect="sqlite", schema="").replace(
        '      customers: "*"\n', '      customers: "*"\n    require_approval: [delete]\n'
    )
    policy = parse_policy(text, "policy.yaml")
    url = f"sqlite:///{source}"
    asked = TaskIdentity("dagster", "purge_job", "purge", run_id="run-1", partition="2023-01-01")
    sql = "DELETE FROM customers WHERE id < ?"
    with (
        connect(url, policy=policy, scope="purge", identity=asked, audit=audit) as c,
        pytest.raises(ApprovalRequired) as info,
    ):
        c.execute(sql, [5])
    approvals = ApprovalStore(audit)
    approvals.approve(info.value.request_id, Approver("joao"), "old rows")
    other = replace(asked, partition="2099-01-01")
    with (
        connect(url, policy=policy, scope="purge", identity=other, audit=audit) as c,
        pytest.raises(ApprovalRequired) as refused,
    ):
        c.execute(sql, [21])
    assert refused.value.request_id != info.value.request_id
    assert approvals.get(info.value.request_id).usable  # still there for its partition
    assert sqlite3.connect(source).execute("SELECT count(*) FROM customers").fetchone() == (20,)
    with connect(url, policy=policy, scope="purge", identity=asked, audit=audit) as c:
        assert c.execute(sql, [5]).rowcount == 4


def test_an_approval_past_its_expiry_does_not_run_the_statement(
    source: Path, policy: Policy, audit: AuditStore
) -> None:
    from sqlalchemy import update

    from lgpd_tasks.audit.schema import approval_requests
    from lgpd_tasks.errors import ApprovalExpired

    who = TaskIdentity("airflow", "contractor", "purge", run_id="manual__3")
    url = f"sqlite:///{source}"
    with pytest.raises(ApprovalRequired) as info:
        connect(url, policy=policy, scope="purge", identity=who, audit=audit).execute(
            "DELETE FROM customers"
        )
    approvals = ApprovalStore(audit)
    approvals.approve(info.value.request_id, Approver("joao"))
    with audit.engine.begin() as db:
        db.execute(
            update(approval_requests)
            .where(approval_requests.c.id == info.value.request_id)
            .values(expires_at="2020-01-02T00:00:00.000000+00:00")
        )
    with pytest.raises(ApprovalExpired) as expired:
        connect(url, policy=policy, scope="purge", identity=who, audit=audit).execute(
            "DELETE FROM customers"
        )
    assert expired.value.request_id == info.value.request_id
    assert sqlite3.connect(source).execute("SELECT count(*) FROM customers").fetchone() == (20,)
    assert approvals.get(info.value.request_id).consumed_at is None
