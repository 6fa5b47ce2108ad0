"""The packed subject trail: the digest helper process, large extracts, links, reports."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from faker import Faker
from sqlalchemy import text

from lgpd_tasks.audit import AuditStore, dispose_engines
from lgpd_tasks.connection import connect
from lgpd_tasks.errors import AuditUnavailable
from lgpd_tasks.evidence.digests import HELPER_AFTER, Digester, Hasher
from lgpd_tasks.evidence.reports import subject_report
from lgpd_tasks.evidence.subjects import SubjectHasher, trail_key
from lgpd_tasks.evidence.trail_worker import SUBJECT
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


def _split(blob: bytes, width: int) -> list[bytes]:
    return sorted(blob[i : i + width] for i in range(0, len(blob), width))


def test_the_helper_process_computes_what_the_statement_would_itself() -> None:
    key = b"a key of some length"
    hasher = Hasher(key)
    pk = b"p\0main.customers\0"
    people = [f"{n:011d}" for n in range(5000)]
    results = []
    for helper_after in (0, 10**9):
        digester = Digester(key, helper_after=helper_after)
        digester.add(SUBJECT, people[:10] + people[:3])
        # a separator inside a value: that batch is hashed in-process, nothing is lost
        digester.add(SUBJECT, ["maria\nsilva@example.com", "joao@example.com"])
        digester.link(pk, [str(i) for i in range(5000)], people)
        digester.link(pk, ["1", "5001"], [people[1], "ana@example.com"])
        assert digester.helper_started is (helper_after == 0)
        results.append(digester.take())
        assert digester.take() == (b"", b"")
        digester.close()
    (trail, links), (local_trail, local_links) = results
    assert _split(trail, 16) == _split(local_trail, 16)
    assert _split(links, 32) == _split(local_links, 32)
    assert len(_split(trail, 16)) == len(set(_split(trail, 16))) == 5000 + 3
    assert hasher.digest(SUBJECT + b"maria\nsilva@example.com") in _split(trail, 16)
    assert hasher.digest(pk + b"5001") + hasher.digest(SUBJECT + b"ana@example.com") in (
        _split(links, 32)
    )
    assert len(links) == 32 * 5001


def test_a_dead_helper_fails_closed() -> None:
    digester = Digester(b"k", helper_after=0)
    digester.add(SUBJECT, ["1", "2", "3"])
    process = digester._process
    assert process is not None
    process.kill()
    process.wait()
    many = [str(i) for i in range(200_000)]

    def feed_and_collect() -> None:
        digester.add(SUBJECT, many)  # a full pipe fails here, an empty one at take
        digester.take()

    with pytest.raises(AuditUnavailable, match="digest helper"):
        feed_and_collect()


def test_a_helper_whose_answer_is_not_read_ends_at_once(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # the statement asked for the digests, then failed or was interrupted before it read
    # them: the answer (megabytes, more than a pipe holds) has no reader, and closing the
    # helper must end it rather than wait ten seconds and kill it
    digester = Digester(b"k", helper_after=0)
    digester.add(SUBJECT, [f"{n:011d}" for n in range(200_000)])
    process = digester._process
    assert process is not None
    assert process.stdin is not None
    process.stdin.write(b"F")
    process.stdin.flush()
    digester.close()
    assert process.returncode == 0, "the helper ended by itself, not killed after a wait"
    assert process.stdout is not None
    assert process.stdout.closed
    assert "Traceback" not in capfd.readouterr().err


def test_ctrl_c_is_left_to_the_task(capfd: pytest.CaptureFixture[str]) -> None:
    # Ctrl-C in a terminal reaches the helper too; the task decides what happens (its own
    # KeyboardInterrupt closes the helper), so the helper carries on meanwhile
    import os
    import signal

    digester = Digester(b"k", helper_after=0)
    digester.add(SUBJECT, ["1", "2"])
    trail, _ = digester.take()  # it is running: it answered
    assert len(trail) == 32
    process = digester._process
    assert process is not None
    os.kill(process.pid, signal.SIGINT)
    digester.add(SUBJECT, ["3"])
    trail, _ = digester.take()
    digester.close()
    assert len(trail) == 16
    assert "Traceback" not in capfd.readouterr().err


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def trail_audit(request: pytest.FixtureRequest, audit_url: str) -> str:
    if request.param == "sqlite":
        return audit_url
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("pg_schema")
    return f"{dsn}?options=-csearch_path%3D{schema}"


def test_a_large_extract_is_found_by_subject_and_through_its_primary_key(
    crm: tuple[Path, list[tuple[int, str, str]]], trail_audit: str, masking_key: str
) -> None:
    path, people = crm
    policy = parse_policy(POLICY)
    who = TaskIdentity("airflow", "report", "extract", run_id="r1")
    store = AuditStore.from_url(trail_audit)
    try:
        with connect(
            f"sqlite:///{path}", policy=policy, scope="report.extract", identity=who, audit=store
        ) as conn:
            cur = conn.execute("SELECT id, nome, cpf FROM customers")
            while cur.fetchmany(2000):
                pass
            # only primary keys (through the reference): found through the links
            conn.execute("SELECT customer_id, total FROM orders").fetchall()
        hasher = SubjectHasher(trail_key(policy))
        with store.engine.connect() as db:
            count, size = db.execute(
                text("SELECT sum(count), sum(length(digests)) FROM lgpd_subject_digests")
            ).one()
            blobs = [
                bytes(r[0]) for r in db.execute(text("SELECT digests FROM lgpd_subject_digests"))
            ]
            links = db.execute(text("SELECT sum(count) FROM lgpd_subject_link_blocks")).scalar()
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
        assert [a["statement"] for a in without["accesses"]] == [
            "SELECT id, nome, cpf FROM customers"
        ]
        assert people[-1][2] not in str(without)
    finally:
        dispose_engines()
