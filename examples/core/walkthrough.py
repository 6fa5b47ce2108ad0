"""The core walkthrough: guarded statements through `lgpd-tasks exec`, an approval, the audit.

Runs on the embedded defaults only (SQLite files under .demo/core), with synthetic data.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from faker import Faker

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("LGPD_DEMO_DIR") or ROOT / ".demo" / "core")
POLICY = HERE / "policy.yaml"
SOURCE = f"sqlite:///{WORK / 'source.db'}"
AUDIT = f"sqlite:///{WORK / 'audit.db'}"
CLI = [sys.executable, "-m", "lgpd_tasks.cli"]


def make_source(path: Path, customers: int = 200) -> None:
    fake = Faker("pt_BR")
    Faker.seed(2026)
    rng = random.Random(2026)
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE customers (id INTEGER PRIMARY KEY, nome TEXT, cpf TEXT, email TEXT,
                                telefone TEXT, cidade TEXT, renda REAL, created_at TEXT);
        CREATE TABLE staging_orders (id INTEGER PRIMARY KEY, customer_id INTEGER,
                                     total REAL, created_at TEXT);
        """
    )
    db.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                i,
                fake.name(),
                fake.cpf(),
                fake.email(),
                fake.cellphone_number(),
                fake.city(),
                round(rng.uniform(1500, 25000), 2),
                fake.date_between("-3y").isoformat(),
            )
            for i in range(1, customers + 1)
        ],
    )
    db.executemany(
        "INSERT INTO staging_orders VALUES (?, ?, ?, ?)",
        [
            (i, rng.randint(1, customers), round(rng.uniform(10, 900), 2), f"2025-0{1 + i % 9}-01")
            for i in range(1, 501)
        ],
    )
    db.commit()
    db.close()


def step(title: str, args: list[str], *, expect: int) -> subprocess.CompletedProcess[str]:
    print(f"\n== {title}")
    print("$ lgpd-tasks " + " ".join(shlex.quote(a) for a in args))
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout)
    sys.stdout.write(done.stderr)
    print(f"(exit code {done.returncode})")
    if done.returncode != expect:
        raise SystemExit(f"walkthrough: expected exit code {expect}, got {done.returncode}")
    return done


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    os.environ.setdefault("LGPD_MASKING_KEY", "demo-key-for-synthetic-data-only")
    make_source(WORK / "source.db")
    print(f"Synthetic source with 200 customers (Faker pt_BR): {SOURCE}")
    run = ["--policy", str(POLICY), "--db", SOURCE, "--audit", AUDIT]
    step("Initialise the audit store", ["db", "init", "--db", AUDIT], expect=0)
    step(
        "An allowed read: personal columns come back masked",
        [
            "exec",
            *run,
            "--scope",
            "customer_report.extract",
            "--as",
            "ana",
            "--sql",
            "SELECT id, nome, cpf, email, telefone, cidade FROM customers ORDER BY id LIMIT 5",
        ],
        expect=0,
    )
    step(
        "A column outside the scope (renda) is blocked before it reaches the database",
        [
            "exec",
            *run,
            "--scope",
            "customer_report.extract",
            "--as",
            "ana",
            "--sql",
            "SELECT id, renda FROM customers",
        ],
        expect=4,
    )
    step(
        "DDL is blocked",
        [
            "exec",
            *run,
            "--scope",
            "customer_report.purge",
            "--as",
            "ana",
            "--sql",
            "DROP TABLE staging_orders",
        ],
        expect=4,
    )
    purge = "DELETE FROM staging_orders"
    asked = step(
        "A DELETE without WHERE needs a person's approval",
        ["exec", *run, "--scope", "customer_report.purge", "--as", "ana", "--sql", purge],
        expect=3,
    )
    request_id = next(w for w in asked.stderr.split() if w.startswith("apr_"))
    step(
        "The requester cannot approve her own request",
        ["approvals", "approve", request_id, "--db", AUDIT, "--as", "ana"],
        expect=1,
    )
    step(
        "The data protection officer approves it",
        [
            "approvals",
            "approve",
            request_id,
            "--db",
            AUDIT,
            "--as",
            "dpo",
            "--reason",
            "staging reset before the monthly load",
        ],
        expect=0,
    )
    step(
        "The same statement now runs, once",
        ["exec", *run, "--scope", "customer_report.purge", "--as", "ana", "--sql", purge],
        expect=0,
    )
    step(
        "The audit: one line per statement and approval step",
        ["audit", "tail", "--db", AUDIT, "-n", "30"],
        expect=0,
    )
    step("The hash chain verifies", ["audit", "verify", "--db", AUDIT], expect=0)
    print("\nWalkthrough finished: every statement above is in the audit, with no personal value.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
