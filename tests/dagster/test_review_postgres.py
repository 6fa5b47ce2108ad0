"""A deferred constraint failing at COMMIT: the Dagster event log gets no raw row values."""

# No ``from __future__ import annotations``: Dagster reads the assets' annotations.
from pathlib import Path

import dagster as dg
import pytest
from faker import Faker
from lgpd_tasks_dagster import GuardedDatabaseResource, StatementFailedFailure

pytestmark = pytest.mark.postgres

POLICY = """
version: 1
dialect: postgres
purposes:
  customer_report:
    legal_basis: legitimate_interest
    retention: 180d
scopes:
  crm.load:
    purpose: customer_report
    write:
      {schema}.customers: [id, cpf, email]
masking:
  columns: {{cpf: hmac, email: partial}}
  key_env: LGPD_MASKING_KEY
"""


def test_commit_failure_is_a_scrubbed_failure_in_the_event_log(
    postgres_dsn: str,
    pg_schema: str,
    masking_key: str,
    dagster_instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    import psycopg

    fake = Faker("pt_BR")
    cpf, email = fake.cpf(), fake.email()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".customers (id int, cpf text, email text, '
            "CONSTRAINT one_cpf UNIQUE (cpf) DEFERRABLE INITIALLY DEFERRED)"
        )
        conn.execute(f'INSERT INTO "{pg_schema}".customers VALUES (1, %s, %s)', (cpf, email))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(schema=pg_schema))
    lgpd = GuardedDatabaseResource(
        database_url=postgres_dsn,
        audit_url=f"sqlite:///{tmp_path / 'audit.db'}",
        policy_file=str(policy),
        scope="crm.load",
    )

    @dg.asset
    def loaded(lgpd: GuardedDatabaseResource) -> None:
        lgpd.execute(
            f'INSERT INTO "{pg_schema}".customers (id, cpf, email) VALUES (%s, %s, %s)',
            (2, cpf, email),
        )

    result = dg.materialize(
        [loaded], resources={"lgpd": lgpd}, instance=dagster_instance, raise_on_error=False
    )
    assert not result.success
    failure = result.failure_data_for_node("loaded")
    assert failure is not None
    assert failure.error is not None
    logged = "\n".join(str(record) for record in dagster_instance.all_logs(result.run_id))
    assert cpf not in logged
    assert email not in logged
    assert StatementFailedFailure.__name__ in (failure.error.cls_name or "")
    assert "database refused the commit" in failure.error.message
