"""A 1,000,000-row extract through GuardedConnection with and without the subject trail.

    .venv/bin/python benchmarks/subject_trail.py [--rows N] [--repeat R]

Prints the best and the median of R runs and the ratios of the best (target: the trail adds
under 10%). The runs interleave the three variants, so a busy neighbour slows all alike.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the digest helper)."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def extract(source: Path, audit: str, policy_text: str, task: str) -> tuple[float, float]:
    """Wall-clock and CPU seconds (helper included) of one extract."""
    policy = parse_policy(policy_text)
    who = TaskIdentity("cli", "bench", task, run_id=task)
    cpu = _cpu()
    started = time.perf_counter()
    with connect(
        f"sqlite:///{source}", policy=policy, scope="report.extract", identity=who, audit=audit
    ) as conn:
        cur = conn.execute("SELECT id, nome, cpf, email, cidade, total FROM customers")
        while cur.fetchmany(10_000):
            pass
    return time.perf_counter() - started, _cpu() - cpu


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
        cpus: dict[str, list[float]] = {"plain": [], "key": [], "key+pk": []}
        for i in range(args.repeat):
            for name, text in (("plain", POLICY), ("key", key_only), ("key+pk", with_pk)):
                wall, cpu = extract(source, audit, text, f"{name}{i}")
                times[name].append(wall)
                cpus[name].append(cpu)
        base, base_cpu = min(times["plain"]), min(cpus["plain"])
        print(
            f"rows: {args.rows:,}  (best and median of {args.repeat}; masking on: hmac cpf, "
            "partial e-mail, redacted name)"
        )
        print(f"{'':<36}{'best':>8}{'median':>8}   {'ratio':>7}{'CPU':>9}   {'ratio':>7}")
        for name, label in (
            ("plain", "extract without trail"),
            ("key", "with trail (subject key cpf)"),
            ("key+pk", "with trail (cpf + primary key id)"),
        ):
            t, cpu = min(times[name]), min(cpus[name])
            print(
                f"{label:<36}{t:8.2f}{statistics.median(times[name]):8.2f} s "
                f"{100 * (t / base - 1):+6.1f}%{cpu:8.2f} s {100 * (cpu / base_cpu - 1):+6.1f}%"
            )
        print("CPU: this process and the digest helper together (best of the runs)")


if __name__ == "__main__":
    main()
