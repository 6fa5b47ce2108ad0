"""The packed subject trail: the digest helper process, large extracts, links, reports."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from faker import Faker

from lgpd_tasks.audit import AuditStore
from lgpd_tasks.connection import connect
from lgpd_tasks.errors import AuditUnavailable
from lgpd_tasks.evidence.digests import HELPER_AFTER, Digester, Hasher
from lgpd_tasks.evidence.reports import subject_report
from lgpd_tasks.evidence.subjects import SubjectHasher, trail_key
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import parse_policy

POLICY = """
version: 1
dialect: sqlite
purposes: {report: {legal_basis: legitimate_interest, retention: 30d}}
scopes:
  report.extract: {purpose: report, read: {customers: [id, nome, cpf], orders: "*"}}
subjects:
  customers: {key: cpf, primary_key: id}
  orders: {key: customer_id, references: customers}
masking:
  columns: {cpf: hmac, nome: redact}
"""


def test_the_helper_process_gives_the_same_digests_in_order() -> None:
    hasher = Hasher(b"a key of some length")
    digester = Digester(hasher, helper_after=3)
    jobs = [
        (b"s\0", ["12345678909", "98765432100"]),
        (b"p\0main.customers\0", [str(i) for i in range(5000)]),
        # a separator inside a value: hashed in-process, the order still holds
        (b"s\0", ["maria\nsilva@example.com", "joao@example.com"]),
        (b"s\0", []),
        (b"s\0", ["ana@example.com"]),
    ]
    for prefix, texts in jobs:
        digester.submit(prefix, texts)
    assert digester.helper_started
    got = digester.collect()
    assert got == [hasher.many(prefix, texts) for prefix, texts in jobs]
    assert got[2] == hasher.digest(b"s\0maria\nsilva@example.com") + hasher.digest(
        b"s\0joao@example.com"
    )
    digester.submit(b"s\0", ["1", "2"])
    assert digester.collect() == [hasher.many(b"s\0", ["1", "2"])]
    digester.close()


def test_a_dead_helper_fails_closed() -> None:
    digester = Digester(Hasher(b"k"), helper_after=0)
    digester.submit(b"s\0", ["1", "2", "3"])
    assert digester.helper_started
    process = digester._process
    assert process is not None
    process.kill()
    process.wait()
    with pytest.raises(AuditUnavailable, match="digest helper"):
        digester.submit(b"s\0", [str(i) for i in range(200_000)])
        digester.collect()


@pytest.fixture
def crm(tmp_path: Path) -> tuple[Path, list[tuple[int, str, str]]]:
    fake = Faker("pt_BR")
    Faker.seed(7)
    people = [(i, fake.name(), fake.unique.cpf()) for i in range(1, 3 * HELPER_AFTER + 1)]
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, nome TEXT, cpf TEXT)")
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL)")
        db.executemany("INSERT INTO customers VALUES (?, ?, ?)", people)
        db.executemany(
            "INSERT INTO orders (customer_id, total) VALUES (?, ?)",
            [(i, 10.0 * n) for i in range(1, 101) for n in range(3)],
        )
    return path, people


def test_a_large_extract_is_found_by_subject_and_through_its_primary_key(
    crm: tuple[Path, list[tuple[int, str, str]]], audit_url: str, masking_key: str
) -> None:
    path, people = crm
    policy = parse_policy(POLICY)
    who = TaskIdentity("airflow", "report", "extract", run_id="r1")
    with connect(
        f"sqlite:///{path}", policy=policy, scope="report.extract", identity=who, audit=audit_url
    ) as conn:
        cur = conn.execute("SELECT id, nome, cpf FROM customers")
        while cur.fetchmany(2000):
            pass
        # only primary keys (through the reference): found through the links
        conn.execute("SELECT customer_id, total FROM orders").fetchall()
    store = AuditStore.from_url(audit_url)
    hasher = SubjectHasher(trail_key(policy))
    with sqlite3.connect(audit_url.removeprefix("sqlite:///")) as raw:
        ((count, size),) = raw.execute(
            "SELECT sum(count), sum(length(digests)) FROM lgpd_subject_digests"
        ).fetchall()
        blobs = [bytes(r[0]) for r in raw.execute("SELECT digests FROM lgpd_subject_digests")]
        (links,) = raw.execute("SELECT sum(count) FROM lgpd_subject_link_blocks").fetchone()
    # every customer's digest once, the 100 customers of the orders once more (by key)
    assert (count, size) == (len(people) + 100, 16 * (len(people) + 100))
    assert links == len(people)
    # the helper's digests are the ones the report computes
    assert any(hasher.subject(people[-1][2]) in blob for blob in blobs)
    with_orders = subject_report(store, people[41][2], policy=policy)
    assert [a["statement"] for a in with_orders["accesses"]] == [
        "SELECT id, nome, cpf FROM customers",
        "SELECT customer_id, total FROM orders",
    ]
    without = subject_report(store, people[-1][2], policy=policy)
    assert [a["statement"] for a in without["accesses"]] == ["SELECT id, nome, cpf FROM customers"]
    assert people[-1][2] not in str(without)
