"""The audit store: hash chain, verification, tampering, concurrency, unavailability."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
import uuid
from pathlib import Path

import pytest

from lgpd_tasks.audit import AuditStore, EntryFilter, NewEntry, dispose_engines
from lgpd_tasks.cli import main
from lgpd_tasks.errors import AuditChainBroken, AuditStoreUnusable, AuditUnavailable
from lgpd_tasks.identity import TaskIdentity

WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)


def _fill(store: AuditStore, n: int, task: str = "extract") -> None:
    ident = TaskIdentity("airflow", "contractor", task, run_id="manual__1")
    for i in range(n):
        store.append(NewEntry(kind="note", identity=ident, details={"i": i}, decision="allow"))


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")


def test_chain_links_each_record_to_the_one_before(store: AuditStore) -> None:
    _fill(store, 5)
    entries = store.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    result = store.verify()
    assert result.ok
    assert result.records == 5
    assert result.head == entries[-1].hash


def _sql(store: AuditStore, statement: str) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql(statement)


@pytest.mark.parametrize(
    ("tamper", "seq", "problem"),
    [
        pytest.param(
            "UPDATE lgpd_audit_log SET details = '{\"i\":99}' WHERE seq = 3",
            3,
            "altered",
            id="altered-details",
        ),
        pytest.param(
            "UPDATE lgpd_audit_log SET decision = 'block' WHERE seq = 2",
            2,
            "altered",
            id="altered-decision",
        ),
        pytest.param("DELETE FROM lgpd_audit_log WHERE seq = 3", 4, "missing", id="removed"),
        pytest.param(
            "UPDATE lgpd_audit_log SET seq = 100 WHERE seq = 2;"
            "UPDATE lgpd_audit_log SET seq = 2 WHERE seq = 3;"
            "UPDATE lgpd_audit_log SET seq = 3 WHERE seq = 100",
            2,
            "reordered",
            id="reordered",
        ),
    ],
)
def test_verify_names_the_first_broken_record(
    store: AuditStore, tamper: str, seq: int, problem: str
) -> None:
    _fill(store, 5)
    for statement in tamper.split(";"):
        _sql(store, statement)
    result = store.verify()
    assert not result.ok
    assert result.breaks[0].seq == seq
    assert problem in result.breaks[0].problem
    with pytest.raises(AuditChainBroken, match=f"record #{seq}"):
        store.verify_or_raise()


def test_cli_verify_exits_non_zero_naming_the_record(
    store: AuditStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(store, 3)
    url = f"sqlite:///{tmp_path}/audit.db"
    assert main(["audit", "verify", "--db", url]) == 0
    assert "audit chain OK: 3 records" in capsys.readouterr().out
    _sql(store, "UPDATE lgpd_audit_log SET task = 'other' WHERE seq = 2")
    assert main(["audit", "verify", "--db", url]) == 1
    assert "BROKEN at record #2" in capsys.readouterr().err


def test_tail_filters_by_task(store: AuditStore, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(store, 2, task="extract")
    _fill(store, 3, task="load")
    records = store.records(EntryFilter(task="load"), limit=10)
    assert [r.entry.task for r in records] == ["load"] * 3
    assert [r.entry.seq for r in records] == [3, 4, 5]


def test_unwritable_store_raises_audit_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    store = AuditStore.from_url(f"sqlite:///{path}")
    _fill(store, 1)
    dispose_engines()
    # another process holds the write lock for longer than the writer waits
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        fast = AuditStore.from_url(f"sqlite:///{path}?timeout=0.2")
        with pytest.raises(AuditUnavailable, match="database is locked"):
            _fill(fast, 1)
    finally:
        blocker.rollback()
        blocker.close()


def test_unreachable_postgres_store_is_unavailable() -> None:
    store = AuditStore.from_url("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(AuditUnavailable, match=r"127\.0\.0\.1:1"):
        _fill(store, 1)


def _writer(url: str, worker: int, count: int) -> None:
    dispose_engines()
    store = AuditStore.from_url(url)
    ident = TaskIdentity("dagster", "job", f"op{worker}", run_id="r")
    for i in range(count):
        store.append(NewEntry(kind="note", identity=ident, details={"w": worker, "i": i}))


def _concurrent(url: str, workers: int = 4, count: int = 25) -> AuditStore:
    AuditStore.from_url(url).init()
    dispose_engines()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    return AuditStore.from_url(url)


def test_four_processes_keep_one_chain_on_sqlite(tmp_path: Path) -> None:
    store = _concurrent(f"sqlite:///{tmp_path}/audit.db")
    result = store.verify()
    assert result.ok, result.breaks
    assert result.records == 100


@pytest.mark.postgres
def test_four_processes_keep_one_chain_on_postgres(postgres_dsn: str) -> None:
    import psycopg

    db = f"lgpd_audit_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.execute(f"CREATE DATABASE {db}")
    url = postgres_dsn.rsplit("/", 1)[0] + f"/{db}"
    try:
        store = _concurrent(url)
        result = store.verify()
        assert result.ok, result.breaks
        assert result.records == 100
    finally:
        dispose_engines()
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_records_joins_outcomes_and_honours_the_limit(store: AuditStore) -> None:
    for i in range(5):
        intent = store.append(NewEntry(kind="statement", identity=WHO, details={"i": i}))
        store.append(
            NewEntry(kind="outcome", identity=WHO, ref=intent.record_id, details={"rows": i})
        )
    records = store.records(limit=3)
    assert [r.entry.details["i"] for r in records] == [2, 3, 4]
    assert [r.rows for r in records] == [2, 3, 4]


IN_MEMORY = [
    "sqlite://",
    "sqlite:///",
    "sqlite:///:memory:",
    "sqlite:///file::memory:?uri=true",
    "sqlite:///file:audit?mode=memory&uri=true&cache=shared",
]


@pytest.mark.filterwarnings("ignore:Selection of the SingletonThreadPool")
@pytest.mark.parametrize("url", IN_MEMORY)
def test_in_memory_sqlite_is_refused_as_an_audit_store(url: str) -> None:
    from sqlalchemy import create_engine

    with pytest.raises(AuditStoreUnusable, match="in-memory SQLite database") as info:
        AuditStore.from_url(url)
    assert isinstance(info.value, AuditUnavailable)  # writers that catch outages still stop
    # an engine built by hand is refused as well
    with pytest.raises(AuditStoreUnusable, match="vanish when the process ends"):
        AuditStore(create_engine(url))


def test_db_init_refuses_an_in_memory_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "init", "--db", "sqlite://"]) == 2
    assert "in-memory SQLite database" in capsys.readouterr().err


def _readers(url: str, tmp_path: Path) -> list[list[str]]:
    """Every command that reads or maintains an existing audit store, pointed at ``url``."""
    policy = str(Path(__file__).parents[2] / "examples" / "core" / "policy.yaml")
    return [
        ["audit", "verify", "--db", url],
        ["audit", "tail", "--db", url],
        ["audit", "export", "--db", url, "--to", (tmp_path / "out").as_uri()],
        ["audit", "purge", "--db", url, "--before", "2024-01-01"],
        ["approvals", "list", "--db", url],
        ["approvals", "show", "apr_x", "--db", url],
        ["approvals", "approve", "apr_x", "--db", url, "--as", "dpo"],
        ["approvals", "deny", "apr_x", "--db", url, "--as", "dpo", "--reason", "no"],
        ["report", "ropa", "--audit", url, "--policy", policy],
        ["report", "subject", "--audit", url],
    ]


def test_readers_refuse_a_sqlite_file_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from faker import Faker

    missing = tmp_path / "typo_audit.db"
    for argv in _readers(f"sqlite:///{missing}", tmp_path):
        monkeypatch.setattr("sys.stdin", io.StringIO(Faker("pt_BR").cpf() + "\n"))
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"no such file {str(missing)!r}" in err, argv
        assert "lgpd-tasks db init" in err
        assert not missing.exists(), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_readers_refuse_a_relative_path_naming_it_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["audit", "verify", "--db", "sqlite:///typo_audit.db"]) == 2
    assert str(tmp_path / "typo_audit.db") in capsys.readouterr().err
    assert not (tmp_path / "typo_audit.db").exists()


def test_readers_refuse_a_sqlite_file_without_the_audit_log_and_leave_it_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "source.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    db.close()
    before = other.read_bytes()
    assert main(["audit", "verify", "--db", f"sqlite:///{other}"]) == 2
    assert "holds no audit log (table lgpd_audit_log)" in capsys.readouterr().err
    assert other.read_bytes() == before  # no tables added, not switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.db"]


def test_writers_and_db_init_still_create_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/new_audit.db"
    assert main(["db", "init", "--db", url]) == 0
    assert main(["audit", "verify", "--db", url]) == 0
    assert "audit chain OK: 0 records" in capsys.readouterr().out
    store = AuditStore.from_url(f"sqlite:///{tmp_path}/written.db")
    _fill(store, 2)
    assert AuditStore.open_existing(f"sqlite:///{tmp_path}/written.db").verify().records == 2


@pytest.mark.postgres
def test_readers_refuse_a_postgres_database_without_the_audit_log(
    postgres_dsn: str, pg_schema: str
) -> None:
    url = f"{postgres_dsn}?options=-csearch_path%3D{pg_schema}"
    with pytest.raises(AuditStoreUnusable, match="holds no audit log"):
        AuditStore.open_existing(url)
    AuditStore.from_url(url).init()
    assert AuditStore.open_existing(url).verify().ok


@pytest.mark.parametrize("option", ["--db", "--audit"])
def test_a_non_numeric_port_is_a_clear_error_with_the_password_hidden(
    option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LGPD_MASKING_KEY", "port-test-key-0123456789")
    bad = "postgresql://postgres:s3cret@127.0.0.1:notaport/test"
    # a configuration error (AuditStoreUnusable), not an outage worth retrying
    with pytest.raises(AuditStoreUnusable) as info:
        AuditStore.from_url(bad)
    assert str(info.value) == (
        "the database URL postgresql://postgres:***@127.0.0.1:notaport/test "
        "cannot be parsed: the port must be a number"
    )
    urls = {"--db": f"sqlite:///{tmp_path}/source.db", "--audit": f"sqlite:///{tmp_path}/a.db"}
    urls[option] = bad
    policy = Path(__file__).parents[2] / "examples" / "core" / "policy.yaml"
    argv = ["exec", "--policy", str(policy), "--scope", "customer_report.purge"]
    code = main([*argv, "--db", urls["--db"], "--audit", urls["--audit"], "--sql", "SELECT 1"])
    err = capsys.readouterr().err
    assert code == 2  # a usage error
    assert err == (
        "lgpd-tasks: the database URL postgresql://postgres:***@127.0.0.1:notaport/test "
        "cannot be parsed: the port must be a number\n"
    )
