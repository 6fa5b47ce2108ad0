"""A 1,000,000-row extract through GuardedConnection with and without the subject trail.

    .venv/bin/python benchmarks/subject_trail.py [--rows N] [--repeat R]

Prints the best and the median of R runs and the ratios of the best (target: the trail adds
under 10%). The runs interleave the three variants, so a busy neighbour slows all alike.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from lgpd_tasks.audit import AuditStore
from lgpd_tasks.connection import connect
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import parse_policy

POLICY = """
version: 1
dialect: sqlite
purposes: {report: {legal_basis: legitimate_interest, retention: 180d}}
scopes:
  report.extract: {purpose: report, read: {customers: [id, nome, cpf, email, cidade, total]}}
masking:
  columns: {cpf: hmac, email: partial, nome: redact}
  detect: false
"""


def build_source(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, nome TEXT, cpf TEXT, email TEXT, "
            "cidade TEXT, total REAL)"
        )
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    i,
                    f"Pessoa {i}",
                    f"{i:09d}".join(["", ""])[:9] + f"{i % 97:02d}",
                    f"p{i}@example.com.br",
                    "São Paulo",
                    i * 1.5,
                )
                for i in range(1, rows + 1)
            ),
        )


def extract(source: Path, audit: str, policy_text: str, task: str) -> float:
    policy = parse_policy(policy_text)
    who = TaskIdentity("cli", "bench", task, run_id=task)
    started = time.perf_counter()
    with connect(
        f"sqlite:///{source}", policy=policy, scope="report.extract", identity=who, audit=audit
    ) as conn:
        cur = conn.execute("SELECT id, nome, cpf, email, cidade, total FROM customers")
        while cur.fetchmany(10_000):
            pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("LGPD_MASKING_KEY", "benchmark-key-0123456789abcdef")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.db"
        build_source(source, args.rows)
        audit = f"sqlite:///{tmp}/audit.db"
        AuditStore.from_url(audit).init()
        key_only = POLICY + "subjects:\n  customers: cpf\n"
        with_pk = POLICY + "subjects:\n  customers: {key: cpf, primary_key: id}\n"
        times: dict[str, list[float]] = {"plain": [], "key": [], "key+pk": []}
        for i in range(args.repeat):
            times["plain"].append(extract(source, audit, POLICY, f"plain{i}"))
            times["key"].append(extract(source, audit, key_only, f"key{i}"))
            times["key+pk"].append(extract(source, audit, with_pk, f"pk{i}"))
        base = min(times["plain"])
        print(
            f"rows: {args.rows:,}  (best and median of {args.repeat}; masking on: hmac cpf, "
            "partial e-mail, redacted name)"
        )
        print(f"{'':<36}{'best':>8}  {'median':>8}")
        print(
            f"{'extract without trail':<36}{base:8.2f}  {statistics.median(times['plain']):8.2f} s"
        )
        for name, label in (
            ("key", "with trail (subject key cpf)"),
            ("key+pk", "with trail (cpf + primary key id)"),
        ):
            t = min(times[name])
            mid = statistics.median(times[name])
            print(
                f"{label:<36}{t:8.2f}  {mid:8.2f} s   ratio {t / base:6.3f}"
                f"  (+{100 * (t / base - 1):.1f}%)"
            )


if __name__ == "__main__":
    main()
