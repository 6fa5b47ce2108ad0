"""The example's synthetic source database (Faker pt_BR): contractors and their payments."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS contractors (
    id INTEGER PRIMARY KEY, nome TEXT, cpf TEXT, email TEXT, telefone TEXT, cidade TEXT
);
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY, contractor_id INTEGER, amount REAL, paid_at TEXT
);
CREATE TABLE IF NOT EXISTS payment_summary (
    run_id TEXT, cidade TEXT, contractors INTEGER, total REAL
);
"""


def create_source(path: Path, contractors: int = 200, seed: int = 7) -> Path:
    """Create (or refill) the SQLite source with synthetic contractors and payments."""
    from faker import Faker

    fake = Faker("pt_BR")
    Faker.seed(seed)
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        conn.execute("DELETE FROM contractors")
        conn.execute("DELETE FROM payments")
        conn.executemany(
            "INSERT INTO contractors VALUES (?, ?, ?, ?, ?, ?)",
            [
                (i, fake.name(), fake.cpf(), fake.email(), fake.cellphone_number(), fake.city())
                for i in range(1, contractors + 1)
            ],
        )
        conn.executemany(
            "INSERT INTO payments VALUES (?, ?, ?, ?)",
            [
                (
                    n,
                    rng.randint(1, contractors),
                    round(rng.uniform(500, 9000), 2),
                    f"20{rng.randint(22, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                )
                for n in range(1, contractors * 4 + 1)
            ],
        )
    return path
