"""Create the contractor pipeline's source database: synthetic customers (Faker pt_BR).

python examples/airflow/setup_source.py .demo/source.db --customers 500
"""

from __future__ import annotations

import argparse
import random
import sqlite3
from datetime import date, timedelta
from pathlib import Path

SCHEMA = """
DROP TABLE IF EXISTS customers;
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS staging_orders;
DROP TABLE IF EXISTS customer_summary;
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, nome TEXT, cpf TEXT, email TEXT, telefone TEXT, cidade TEXT,
    created_at TEXT
);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, valor REAL, created_at TEXT);
CREATE TABLE staging_orders (id INTEGER PRIMARY KEY, customer_id INTEGER, payload TEXT,
                             created_at TEXT);
CREATE TABLE customer_summary (run_id TEXT, cidade TEXT, clientes INTEGER, receita REAL,
                               ticket_medio REAL);
"""

CITIES = ["São Paulo", "Rio de Janeiro", "Belo Horizonte", "Recife", "Porto Alegre", "Salvador"]


def create_source(path: Path, customers: int = 500, seed: int = 11) -> Path:
    """(Re)create the source with customers, their orders and old staged order rows."""
    from faker import Faker

    fake = Faker("pt_BR")
    Faker.seed(seed)
    rng = random.Random(seed)
    today = date.today()
    path.parent.mkdir(parents=True, exist_ok=True)

    def day(max_days: int) -> str:
        return (today - timedelta(days=rng.randint(1, max_days))).isoformat()

    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    fake.name(),
                    fake.cpf(),
                    fake.email(),
                    fake.cellphone_number(),
                    rng.choice(CITIES),
                    day(720),
                )
                for i in range(1, customers + 1)
            ],
        )
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [
                (n, rng.randint(1, customers), round(rng.uniform(40, 2500), 2), day(365))
                for n in range(1, customers * 3 + 1)
            ],
        )
        conn.executemany(
            "INSERT INTO staging_orders VALUES (?, ?, ?, ?)",
            [
                (n, rng.randint(1, customers), f"pedido {n} importado", day(180))
                for n in range(1, customers + 1)
            ],
        )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="SQLite file to (re)create")
    parser.add_argument("--customers", type=int, default=500)
    args = parser.parse_args()
    create_source(args.path, args.customers)
    print(f"source database with {args.customers} synthetic customers: {args.path}")


if __name__ == "__main__":
    main()
