"""jsonb and array columns come back with their personal leaves masked, however fetched.

A DB-API driver returns PostgreSQL ``jsonb`` as dicts and lists and ``text[]`` as lists;
their CPFs, e-mails and names must be masked like a column's, under the rule of the key
that holds them, whether the result is fetched row by row or as a DataFrame.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from faker import Faker

from lgpd_tasks.audit import AuditStore
from lgpd_tasks.connection import connect
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import parse_policy
from tests.core.results import FETCH_WAYS, fetch

POLICY = """\
version: 1
dialect: postgres
purposes:
  report:
    legal_basis: legitimate_interest
    retention: 180d
scopes:
  extract:
    purpose: report
    read:
      {schema}.clientes: [id, dados, contatos, notas]
masking:
  columns: {{cpf: hmac, nome: redact}}
  key_env: LGPD_MASKING_KEY
"""

WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)


def _create_clientes(dsn: str, schema: str, rows: list[tuple[Any, ...]]) -> None:
    """The ``clientes`` table (jsonb, text[] and a jsonb of mixed kinds) with ``rows``."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {schema}.clientes (id int, dados jsonb, contatos text[], notas jsonb)"
        )
        with admin.cursor() as cur:
            cur.executemany(f"INSERT INTO {schema}.clientes VALUES (%s, %s, %s, %s)", rows)


@pytest.mark.postgres
def test_jsonb_and_array_leaves_are_masked_on_postgres(
    pg_schema: str, postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from psycopg.types.json import Jsonb

    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret")
    fake = Faker("pt_BR")
    Faker.seed(5)
    people = [(fake.name(), fake.cpf(), fake.email()) for _ in range(100)]
    _create_clientes(
        postgres_dsn,
        pg_schema,
        [
            (
                i,
                Jsonb({"nome": nome, "cpf": cpf, "cidade": "Recife"}),
                [email, cpf],
                # a jsonb column mixing objects and strings
                Jsonb({"obs": f"ligar para {email}"} if i % 2 else "sem observações"),
            )
            for i, (nome, cpf, email) in enumerate(people)
        ],
    )
    policy = parse_policy(POLICY.format(schema=pg_schema))
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    raw = [v for person in people for v in person]
    with connect(postgres_dsn, policy=policy, scope="extract", identity=WHO, audit=audit) as conn:
        for how in FETCH_WAYS:
            result: Any = fetch(conn, f"SELECT * FROM {pg_schema}.clientes ORDER BY id", how)
            rows = result.to_dict("records") if how == "query_df" else result
            shown = json.dumps(
                [list(r.values()) if isinstance(r, dict) else r for r in rows],
                default=str,
                ensure_ascii=False,
            )
            assert not [v for v in raw if v in shown], how
            first = rows[0]
            dados = first["dados"] if isinstance(first, dict) else first[1]
            assert dados["nome"] == "[NAME]", how
            assert dados["cpf"].startswith("hmac:cpf:"), how
            assert dados["cidade"] == "Recife", how
        assert "Recife" in shown


@pytest.mark.postgres
def test_a_jsonb_column_sampled_as_strings_is_still_read_whole(
    pg_schema: str, postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are sampled (64 of them) to plan a fetch; a jsonb column holding strings in
    every sampled row and an object in one other row came back with that object raw."""
    from psycopg.types.json import Jsonb

    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret")
    fake = Faker("pt_BR")
    Faker.seed(6)
    nome, cpf, email = fake.name(), fake.cpf(), fake.email()
    hidden = 777  # not among the sampled positions of 1,000 rows
    _create_clientes(
        postgres_dsn,
        pg_schema,
        [
            (
                i,
                Jsonb("sem dados"),
                None,
                Jsonb({"contato": {"nome": nome, "cpf": cpf}, "obs": email})
                if i == hidden
                else Jsonb(f"nota {i}"),
            )
            for i in range(1_000)
        ],
    )
    policy = parse_policy(POLICY.format(schema=pg_schema))
    audit = AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    sql = f"SELECT id, dados, contatos, notas FROM {pg_schema}.clientes ORDER BY id"
    with connect(postgres_dsn, policy=policy, scope="extract", identity=WHO, audit=audit) as conn:
        for how in FETCH_WAYS:
            result: Any = fetch(conn, sql, how)
            rows = result.to_dict("records") if how == "query_df" else result
            shown = json.dumps(
                [list(r.values()) if isinstance(r, dict) else r for r in rows],
                default=str,
                ensure_ascii=False,
            )
            assert nome not in shown, how
            assert cpf not in shown, how
            assert email not in shown, how
            notas = rows[hidden]["notas"] if how == "query_df" else rows[hidden][3]
            assert notas["contato"]["cpf"].startswith("hmac:cpf:"), how
