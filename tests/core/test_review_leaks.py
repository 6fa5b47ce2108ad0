"""No personal value reaches an exception, the audit file or the CLI's stderr on failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from faker import Faker

from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.cli import main
from lgpd_tasks.connection import GuardedConnection, connect
from lgpd_tasks.errors import ScopeViolation, StatementFailed
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import parse_policy
from lgpd_tasks.redaction import scrub_message
from tests.core.results import FETCH_WAYS, fetch

WHO = TaskIdentity("airflow", "contractor", "load", run_id="manual__1", attempt=1)

POLICY = """\
version: 1
dialect: postgres
purposes:
  report: {{legal_basis: legitimate_interest, retention: 30d}}
scopes:
  load:
    purpose: report
    read:
      {schema}.customers: [id]
    write:
      {schema}.customers: [id, nome, cpf, cidade]
masking:
  columns: {{cpf: hmac, nome: redact}}
"""


@pytest.fixture(autouse=True)
def _masking_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret-0123")


@pytest.mark.postgres
@pytest.mark.parametrize("mask_results", [True, False])
def test_database_errors_quote_no_value(
    pg_schema: str, postgres_dsn: str, tmp_path: Path, mask_results: bool
) -> None:
    import psycopg

    fake = Faker("pt_BR")
    Faker.seed(23)
    nome, cpf, cidade = fake.name(), fake.cpf(), fake.city()
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {pg_schema}.customers "
            "(id int NOT NULL, nome text, cpf text UNIQUE, cidade text)"
        )
        admin.execute(
            f"INSERT INTO {pg_schema}.customers VALUES (1, %s, %s, %s)", (nome, cpf, cidade)
        )
    policy = parse_policy(POLICY.format(schema=pg_schema), "policy.yaml")
    audit_path = tmp_path / "audit.db"
    audit = AuditStore.from_url(f"sqlite:///{audit_path}")
    messages: list[str] = []
    with connect(
        postgres_dsn,
        policy=policy,
        scope="load",
        identity=WHO,
        audit=audit,
        mask_results=mask_results,
    ) as conn:
        table = f"{pg_schema}.customers"
        for sql, params in [
            (f"INSERT INTO {table} (id, cpf) VALUES (2, %s)", (cpf,)),  # Key (cpf)=(...)
            (f"INSERT INTO {table} (nome, cidade) VALUES (%s, %s)", (nome, cidade)),  # row
            (f"UPDATE {table} SET cidade = 'x' WHERE id = %s", (nome,)),  # bad integer
        ]:
            with pytest.raises(StatementFailed) as info:
                conn.execute(sql, params)
            messages.append(str(info.value))
            conn.rollback()
    text = "\n".join(messages)
    assert "unique constraint" in text
    assert "not-null" in text
    assert "customers_cpf_key" in text
    assert '"id"' in text
    raw = audit_path.read_bytes()
    for value in (nome, cpf, cidade, *nome.split()):
        if len(value) > 3:
            assert value not in text
            assert value.encode() not in raw


def _exec(policy: str, scope: str, db: str, tmp_path: Path, sql: str) -> int:
    """``lgpd-tasks exec`` with ``policy`` (its text), auditing to ``tmp_path``."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy)
    return main(
        [
            "exec",
            "--policy", str(policy_file),
            "--scope", scope,
            "--db", db,
            "--audit", f"sqlite:///{tmp_path}/audit.db",
            "--sql", sql,
        ]
    )  # fmt: skip


@pytest.mark.postgres
def test_cli_exec_failure_prints_no_value(
    pg_schema: str, postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    nome = Faker("pt_BR").name()
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {pg_schema}.customers (id int, nome text, cpf text, cidade text)"
        )
    sql = f"UPDATE {pg_schema}.customers SET cidade = 'x' WHERE id = '{nome}'"
    code = _exec(POLICY.format(schema=pg_schema), "load", postgres_dsn, tmp_path, sql)
    err = capsys.readouterr().err
    assert code == 1
    assert "invalid input syntax" in err
    assert nome not in err


FULL_POLICY = """\
version: 1
dialect: postgres
purposes:
  report: {{legal_basis: legitimate_interest, retention: 30d}}
scopes:
  rw:
    purpose: report
    read:
      {schema}.customers: "*"
    write:
      {schema}.customers: "*"
masking:
  columns: {{cpf: hmac, nome: redact}}
"""


@pytest.fixture
def person() -> dict[str, str]:
    fake = Faker("pt_BR")
    Faker.seed(31)
    nome = fake.name()
    return {
        "nome": nome,
        "cpf": fake.cpf(),
        "obs": f'apelido "{fake.first_name()}" de {nome}',
        "nasc": fake.date_of_birth().isoformat(),
    }


@pytest.fixture
def pg_customers(pg_schema: str, postgres_dsn: str, person: dict[str, str]) -> str:
    """A customers table with one person and a trigger that quotes the row in its errors."""
    import psycopg

    table = f"{pg_schema}.customers"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {table} (id int PRIMARY KEY, nome text, cpf text, obs text, "
            "cidade text, nasc date)"
        )
        admin.execute(
            f"CREATE FUNCTION {pg_schema}.chk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.cidade = 'X' THEN "
            "RAISE EXCEPTION 'cliente % (cpf %) bloqueado', NEW.nome, NEW.cpf; END IF; "
            "IF NEW.cidade = 'Y' THEN "
            "RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = 'duplicado: ' || NEW.nome; "
            "END IF; RETURN NEW; END $$"
        )
        admin.execute(
            f"CREATE TRIGGER chk BEFORE UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {pg_schema}.chk()"
        )
        admin.execute(
            f"INSERT INTO {table} VALUES (1, %s, %s, %s, 'Recife', %s), "
            "(2, 'x', 'x', 'x', 'Natal', '19640-09-20')",
            (person["nome"], person["cpf"], person["obs"], person["nasc"]),
        )
    return table


def _connect_rw(table: str, dsn: str, audit: Path | AuditStore) -> GuardedConnection:
    """A connection in scope ``rw`` of :data:`FULL_POLICY` for ``table``'s schema."""
    policy = parse_policy(FULL_POLICY.format(schema=table.split(".")[0]), "policy.yaml")
    store = audit if isinstance(audit, AuditStore) else f"sqlite:///{audit}"
    return connect(dsn, policy=policy, scope="rw", identity=WHO, audit=store)


def _leaked(text: str, person: dict[str, str]) -> list[str]:
    """The parts of ``person`` that appear in ``text``."""
    nasc = person["nasc"]
    values = [
        person["cpf"],
        person["cpf"].replace(".", "").replace("-", "")[:9],
        nasc,
        nasc[:4],
        "19640",
        *[part for part in f"{person['nome']} {person['obs']}".split() if len(part) > 3],
    ]
    return [v for v in values if v.lower() in text.lower() and v not in ("apelido",)]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("sql", "error_class", "message"),
    [
        pytest.param(
            "UPDATE {t} SET cidade = 'X' WHERE id = 1",
            "RaiseException",
            "message withheld (SQLSTATE P0001): raised by a database function or trigger, "
            "its text may quote row values",
            id="trigger-raise",
        ),
        pytest.param(
            "UPDATE {t} SET cidade = 'Y' WHERE id = 1",
            "UniqueViolation",
            "message withheld (SQLSTATE 23505): raised by a database function or trigger, "
            "its text may quote row values",
            id="trigger-raise-errcode",
        ),
        pytest.param(
            "SELECT id, obs::int FROM {t} WHERE id = 1",
            "InvalidTextRepresentation",
            'invalid input syntax for type integer: "?"',
            id="value-with-quotes",
        ),
        pytest.param(
            "SELECT chr(left(replace(replace(cpf, '.', ''), '-', ''), 9)::int) FROM {t} "
            "WHERE id = 1",
            "ProgramLimitExceeded",
            "requested character too large for encoding: ?",
            id="digits",
        ),
        pytest.param(
            "SELECT make_date(extract(year FROM nasc)::int, 9, 60) FROM {t} WHERE id = 1",
            "DatetimeFieldOverflow",
            "date field value out of range: ?",
            id="date",
        ),
    ],
)
def test_postgres_messages_keep_the_kind_of_error_and_no_value(
    pg_customers: str,
    postgres_dsn: str,
    tmp_path: Path,
    person: dict[str, str],
    sql: str,
    error_class: str,
    message: str,
) -> None:
    audit_path = tmp_path / "audit.db"
    with _connect_rw(pg_customers, postgres_dsn, audit_path) as conn:
        with pytest.raises(StatementFailed) as info:
            conn.execute(sql.format(t=pg_customers)).fetchall()
        conn.rollback()
    assert str(info.value) == f"database refused the statement ({error_class}): {message}"
    assert info.value.error_class == error_class
    assert _leaked(str(info.value), person) == []
    assert _leaked(audit_path.read_bytes().decode(errors="replace"), person) == []


@pytest.mark.postgres
@pytest.mark.parametrize("how", FETCH_WAYS)
def test_a_value_the_driver_cannot_load_fails_the_statement(
    pg_customers: str, postgres_dsn: str, tmp_path: Path, how: str
) -> None:
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    sql = f"SELECT id, nasc FROM {pg_customers} WHERE id = 2"
    with _connect_rw(pg_customers, postgres_dsn, audit) as conn:
        with pytest.raises(StatementFailed) as info:
            fetch(conn, sql, how)
        # the connection stays usable
        assert conn.execute(f"SELECT count(id) FROM {pg_customers}").fetchall() == [(2,)]
    assert str(info.value) == (
        "database failed the statement while its rows were fetched (DataError): "
        "date too large (after year 10K): '?'"
    )
    first, _ = audit.records(EntryFilter(kind="statement"))
    assert first.status == "error"
    assert first.outcome is not None
    assert first.outcome.details["error_class"] == "DataError"
    assert "19640" not in str([e.to_dict() for e in audit.entries()])


@pytest.mark.postgres
def test_cli_exec_reports_a_fetch_failure_like_any_other(
    pg_customers: str, postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = FULL_POLICY.format(schema=pg_customers.split(".")[0])
    sql = f"SELECT id, nasc FROM {pg_customers} WHERE id = 2"
    code = _exec(policy, "rw", postgres_dsn, tmp_path, sql)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == (
        "lgpd-tasks: database failed the statement while its rows were fetched (DataError): "
        "date too large (after year 10K): '?'\n"
    )
    assert captured.out == ""


@pytest.mark.postgres
def test_a_value_in_double_quotes_is_not_recorded_on_postgres(
    pg_customers: str, postgres_dsn: str, tmp_path: Path, person: dict[str, str]
) -> None:
    audit_path = tmp_path / "audit.db"
    with _connect_rw(pg_customers, postgres_dsn, audit_path) as conn:
        for column in ("cpf", "nome"):
            with pytest.raises(ScopeViolation) as info:
                conn.execute(f'SELECT id FROM {pg_customers} WHERE {column} = "{person[column]}"')
            assert 'reference "?" cannot be attributed to a table' in str(info.value)
            assert _leaked(str(info.value), person) == []
    records = AuditStore.from_url(f"sqlite:///{audit_path}").records(EntryFilter(kind="statement"))
    assert [r.entry.decision for r in records] == ["block", "block"]
    assert _leaked(audit_path.read_bytes().decode(errors="replace"), person) == []


@pytest.mark.parametrize(
    ("message", "known", "expected"),
    [
        pytest.param(
            'null value in column "id" of relation "customers" violates not-null constraint\n'
            "DETAIL:  Failing row contains (null, Ana, 1).",
            "INSERT INTO s.customers (nome) VALUES (?) s.customers id nome",
            'null value in column "id" of relation "customers" violates not-null constraint',
            id="not-null",
        ),
        pytest.param(
            'column "nmoe" of relation "customers" does not exist at character 30',
            "UPDATE customers SET nmoe = ?",
            'column "nmoe" of relation "customers" does not exist at character 30',
            id="names-and-position",
        ),
        pytest.param(
            "value too long for type character varying(5)",
            "",
            "value too long for type character varying(5)",
            id="type-size",
        ),
        pytest.param(
            'invalid input syntax for type integer: "Ana"\nLINE 1: ...',
            "SELECT",
            'invalid input syntax for type integer: "?"',
            id="value",
        ),
        pytest.param(
            'invalid input syntax for type date: "a"b"c" at "customers"',
            "customers",
            'invalid input syntax for type date: "?"',
            id="value-to-the-last-quote",
        ),
        pytest.param(
            'invalid input syntax for type integer: "Ana\nMaria"',
            "",
            'invalid input syntax for type integer: "?"',
            id="unpaired-quote",
        ),
        pytest.param(
            "requested character too large for encoding: 551567030",
            "",
            "requested character too large for encoding: ?",
            id="digits",
        ),
        pytest.param(
            "date/time field value out of range: 20/09/1964 12:30:00",
            "",
            "date/time field value out of range: ?",
            id="date-time",
        ),
    ],
)
def test_scrub_message(message: str, known: str, expected: str) -> None:
    assert scrub_message(message, known) == expected
