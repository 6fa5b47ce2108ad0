"""Dagster overhead: an asset reading 100,000 rows from PostgreSQL, plain psycopg vs lgpd-tasks.

Plain: psycopg -> DataFrame -> Dagster's FilesystemIOManager. Guarded: GuardedDatabaseResource
(guard, audit intent and outcome, masked rows) -> MaskingIOManager -> FilesystemIOManager.
Prints the median and best wall time of ``materialize()`` and of the asset's own work, side by
side.

    .venv/bin/python benchmarks/dagster_overhead.py [--rows 100000] [--repeat 5]
"""

# No ``from __future__ import annotations``: the assets below are read by Dagster at runtime.

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
from lgpd_tasks_dagster import GuardedDatabaseResource, MaskingIOManager

DSN = os.environ.get("LGPD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")

POLICY = """
version: 1
dialect: postgres
purposes:
  bench:
    legal_basis: legitimate_interest
    retention: 30d
scopes:
  bench.read:
    purpose: bench
    read:
      {schema}.people: [id, nome, cpf, email, cidade, valor]
masking:
  columns: {{cpf: hmac, email: partial, nome: redact}}
  detect: true
"""


def seed(schema: str, rows: int) -> None:
    from faker import Faker

    fake = Faker("pt_BR")
    Faker.seed(1)
    rng = random.Random(1)
    names = [fake.name() for _ in range(2000)]
    emails = [fake.email() for _ in range(2000)]
    cities = [fake.city() for _ in range(300)]
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".people (id int primary key, nome text, cpf text, '
            "email text, cidade text, valor numeric(10,2))"
        )
        with conn.cursor().copy(f'COPY "{schema}".people FROM STDIN') as copy:
            for i in range(rows):
                copy.write_row(
                    (
                        i,
                        rng.choice(names),
                        fake.cpf(),
                        rng.choice(emails),
                        rng.choice(cities),
                        round(rng.uniform(10, 5000), 2),
                    )
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("LGPD_MASKING_KEY", "benchmark-key-0123456789abcdef")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="lgpd_dagster_bench_"))
    policy = work / "policy.yaml"
    policy.write_text(POLICY.format(schema=schema))
    sql = f'SELECT id, nome, cpf, email, cidade, valor FROM "{schema}".people'
    compute: dict[str, list[float]] = {"plain": [], "guarded": []}

    @dg.asset
    def plain_people() -> pd.DataFrame:
        started = time.perf_counter()
        with psycopg.connect(DSN) as conn, conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
            columns = [d.name for d in cur.description or ()]
        df = pd.DataFrame.from_records(rows, columns=columns)
        compute["plain"].append(time.perf_counter() - started)
        return df

    @dg.asset
    def guarded_people(lgpd: GuardedDatabaseResource) -> pd.DataFrame:
        started = time.perf_counter()
        df = lgpd.query_df(sql)
        compute["guarded"].append(time.perf_counter() - started)
        return df

    seed(schema, args.rows)
    try:
        lgpd = GuardedDatabaseResource(
            policy_file=str(policy),
            scope="bench.read",
            database_url=DSN,
            audit_url=f"sqlite:///{work / 'audit.db'}",
        )
        plain_io = dg.FilesystemIOManager(base_dir=str(work / "plain"))
        guarded_io = MaskingIOManager(
            lgpd=lgpd, inner=dg.FilesystemIOManager(base_dir=str(work / "guarded"))
        )
        wall: dict[str, list[float]] = {"plain": [], "guarded": []}
        with dg.instance_for_test(temp_dir=str(work)) as instance:
            for i in range(args.repeat + 1):  # the first round warms caches and is dropped
                for name, asset, resources in (
                    ("plain", plain_people, {"io_manager": plain_io}),
                    ("guarded", guarded_people, {"lgpd": lgpd, "io_manager": guarded_io}),
                ):
                    started = time.perf_counter()
                    assert dg.materialize([asset], resources=resources, instance=instance).success
                    if i:
                        wall[name].append(time.perf_counter() - started)
        compute = {k: v[1:] for k, v in compute.items()}
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

    def line(label: str, data: dict[str, list[float]]) -> None:
        for how, pick in (("median", statistics.median), ("best", min)):
            plain, guarded = pick(data["plain"]), pick(data["guarded"])
            name = f"{label}, {how}"
            print(f"{name:<36} {plain:>9.3f} s {guarded:>9.3f} s {guarded / plain:>7.2f}x")

    print(f"{args.rows:,} rows from PostgreSQL, {args.repeat} interleaved runs")
    print(f"{'':<36} {'plain':>11} {'guarded':>11} {'ratio':>8}")
    line("materialize() wall time", wall)
    line("asset body (query -> df)", compute)


if __name__ == "__main__":
    main()
