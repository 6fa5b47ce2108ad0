"""The guard's caches across connections: a decision made on one connection is reused on the
next when the catalogue answers it consulted are the same, and analysed afresh otherwise
(real SQLite and PostgreSQL connections)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.connection import DatabaseCatalog, GuardedConnection, connect
from lgpd_tasks.errors import ScopeViolation
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, Scope
from lgpd_tasks.sql import (
    Catalog,
    StatementAnalysis,
    StaticCatalog,
    analyze,
    check,
    clear_cache,
)
from lgpd_tasks.sql import analysis as analysis_module
from lgpd_tasks.sql.analysis import AnswerCache
from lgpd_tasks.sql.guard import _DECISIONS

WHO = TaskIdentity("airflow", "cache", "read", run_id="manual__1", attempt=1)
SELECT = "SELECT id, nome FROM t WHERE id = ?"


def _policy(dialect: str, table: str) -> Policy:
    return Policy.from_dict(
        {
            "version": 1,
            "dialect": dialect,
            "purposes": {"report": {"legal_basis": "research", "retention": "1d"}},
            "scopes": {"read": {"purpose": "report", "read": {table: ["id", "nome"]}}},
        }
    )


@pytest.fixture(autouse=True)
def _empty_caches() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts analysed afresh (parsed and walked), in order."""
    analysed: list[str] = []
    original = analysis_module._analyze_fresh

    def counting(
        sql: str, dialect: str, catalog: Catalog | None, scope: Scope | None
    ) -> tuple[StatementAnalysis, ...]:
        analysed.append(sql)
        return original(sql, dialect, catalog, scope)

    monkeypatch.setattr(analysis_module, "_analyze_fresh", counting)
    return analysed


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts sqlglot parsed for the analysis, in order."""
    texts: list[str] = []
    original = sqlglot.parse

    def counting(sql: str, read: str | None = None) -> list[exp.Expr | None]:
        texts.append(sql)
        return original(sql, read=read)

    monkeypatch.setattr(sqlglot, "parse", counting)
    return texts


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (id INTEGER, nome TEXT)")
    db.execute("INSERT INTO t VALUES (1, 'Ana')")
    db.commit()
    db.close()
    return path


def _sqlite(source: Path, audit: AuditStore) -> GuardedConnection:
    return connect(
        f"sqlite:///{source}",
        policy=_policy("sqlite", "t"),
        scope="read",
        identity=WHO,
        audit=audit,
        mask_results=False,
    )


def test_a_second_connection_reuses_the_first_ones_analysis_and_decision(
    source: Path, audit: AuditStore, fresh: list[str], parsed: list[str]
) -> None:
    for _ in range(3):
        with _sqlite(source, audit) as conn:
            assert conn.execute(SELECT, (1,)).fetchall() == [(1, "Ana")]
    assert fresh == [SELECT]
    assert parsed == [SELECT]
    records = audit.records(EntryFilter(kind="statement"))
    assert [r.entry.decision for r in records] == ["allow"] * 3
    assert len({r.entry.fingerprint for r in records}) == 1


def test_select_star_is_analysed_afresh_after_alter_table_on_sqlite(
    source: Path, audit: AuditStore, fresh: list[str]
) -> None:
    star = "SELECT * FROM t"
    with _sqlite(source, audit) as conn:
        assert conn.execute(star).fetchall() == [(1, "Ana")]
    db = sqlite3.connect(source)
    db.execute("ALTER TABLE t ADD COLUMN cpf TEXT")
    db.commit()
    db.close()
    with _sqlite(source, audit) as conn, pytest.raises(ScopeViolation, match="cpf"):
        conn.execute(star)
    assert fresh == [star, star]
    # the new shape is remembered too: a third connection reuses the block
    with _sqlite(source, audit) as conn, pytest.raises(ScopeViolation, match="cpf"):
        conn.execute(star)
    assert fresh == [star, star]
    records = audit.records(EntryFilter(kind="statement"))
    assert [r.entry.decision for r in records] == ["allow", "block", "block"]


@pytest.mark.postgres
def test_select_star_is_analysed_afresh_after_alter_table_on_postgres(
    pg_schema: str, postgres_dsn: str, audit: AuditStore, fresh: list[str]
) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE {pg_schema}.t (id int, nome text)")
        admin.execute(f"INSERT INTO {pg_schema}.t VALUES (1, 'Ana')")
    policy = _policy("postgres", f"{pg_schema}.t")

    def guarded() -> GuardedConnection:
        return connect(
            postgres_dsn,
            policy=policy,
            scope="read",
            identity=WHO,
            audit=audit,
            mask_results=False,
        )

    by_id = f"SELECT id, nome FROM {pg_schema}.t WHERE id = %s"
    star = f"SELECT * FROM {pg_schema}.t"
    for _ in range(2):
        with guarded() as conn:
            assert conn.execute(by_id, (1,)).fetchall() == [(1, "Ana")]
            assert conn.execute(star).fetchall() == [(1, "Ana")]
    assert fresh == [by_id, star]
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"ALTER TABLE {pg_schema}.t ADD COLUMN cpf text")
    with guarded() as conn:
        with pytest.raises(ScopeViolation, match="cpf"):
            conn.execute(star)
        # the table's answer changed: the statement without '*' is analysed afresh too
        assert conn.execute(by_id, (1,)).fetchall() == [(1, "Ana")]
    assert fresh == [by_id, star, star, by_id]
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"ALTER TABLE {pg_schema}.t DROP COLUMN cpf")
    with guarded() as conn:
        assert conn.execute(star).fetchall() == [(1, "Ana")]
    assert fresh == [by_id, star, star, by_id]  # the first shape's decision is still kept
    records = audit.records(EntryFilter(kind="statement"))
    assert [r.entry.decision for r in records] == ["allow"] * 4 + ["block", "allow", "allow"]


def test_a_statement_that_consults_no_catalogue_holds_for_any(
    source: Path, tmp_path: Path, audit: AuditStore, fresh: list[str]
) -> None:
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (id INTEGER, nome TEXT, cpf TEXT)")
    db.close()
    sql = "SELECT 1 + 1 AS two"
    for path in (source, other, source):
        with _sqlite(path, audit) as conn:
            assert conn.execute(sql).fetchall() == [(2,)]
    scope = _policy("sqlite", "t").scope("read")
    for catalog in (None, StaticCatalog({"main.t": ("x",)}), StaticCatalog({})):
        assert check(sql, scope, catalog=catalog).action == "allow"
    assert fresh == [sql]


def test_a_statement_without_star_is_reused_by_any_catalogue_that_answers_the_same(
    fresh: list[str],
) -> None:
    scope = _policy("sqlite", "t").scope("read")
    sql = "SELECT id, nome FROM t"
    same = [
        StaticCatalog({"main.t": ("id", "nome")}),
        StaticCatalog({"main.t": ("id", "nome"), "main.u": ("cpf",)}),  # another table differs
    ]
    for catalog in same:
        assert check(sql, scope, catalog=catalog).action == "allow"
    assert fresh == [sql]
    # without the catalogue's answer 'nome' is no longer known to be t's: afresh, and blocked
    assert check(sql, scope, catalog=StaticCatalog({"main.t": ("id",)})).action == "block"
    assert fresh == [sql, sql]


def test_no_catalogue_and_a_catalogue_are_different_answers(fresh: list[str]) -> None:
    sql = "SELECT * FROM t"
    [bare] = analyze(sql, "sqlite")
    [known] = analyze(sql, "sqlite", catalog=StaticCatalog({"main.t": ("id", "nome")}))
    assert bare.columns_read["main.t"] == frozenset({"*"})
    assert known.columns_read["main.t"] == frozenset({"id", "nome"})
    assert analyze(sql, "sqlite") == (bare,)
    assert fresh == [sql, sql]


def test_explain_records_the_questions_of_the_statement_it_explains(fresh: list[str]) -> None:
    sql = "EXPLAIN SELECT * FROM t"
    [two] = analyze(sql, "sqlite", catalog=StaticCatalog({"main.t": ("id", "nome")}))
    [three] = analyze(sql, "sqlite", catalog=StaticCatalog({"main.t": ("id", "nome", "cpf")}))
    assert two.columns_read["main.t"] == frozenset({"id", "nome"})
    assert three.columns_read["main.t"] == frozenset({"id", "nome", "cpf"})


def test_variants_per_text_and_texts_are_bounded(fresh: list[str]) -> None:
    sql = "SELECT * FROM t"
    shapes = [StaticCatalog({"main.t": tuple(f"c{i}" for i in range(n))}) for n in range(1, 7)]
    for catalog in shapes:
        analyze(sql, "sqlite", catalog=catalog)
    key = (sql, "sqlite", None)
    assert len(analysis_module._ANALYSES.variants_of(key)) == 4
    assert len(fresh) == 6
    for catalog in shapes[2:]:  # the four most recent are kept
        analyze(sql, "sqlite", catalog=catalog)
    assert len(fresh) == 6
    analyze(sql, "sqlite", catalog=shapes[0])  # the oldest was dropped
    assert len(fresh) == 7

    cache: AnswerCache[str] = AnswerCache(maxsize=3, variants=2)
    made: list[str] = []

    def make(name: str) -> Callable[[object], str]:
        def compute(_: object) -> str:
            made.append(name)
            return name

        return compute

    for name in "abc":
        cache.get(name, None, make(name))
    cache.get("a", None, make("a"))  # used: 'b' is now the least recently used
    cache.get("d", None, make("d"))
    assert len(cache) == 3
    assert made == ["a", "b", "c", "d"]
    assert cache.get("b", None, make("b")) == "b"
    assert made == ["a", "b", "c", "d", "b"]


class _Raising:
    """A catalogue that cannot answer (a driver error a catalogue does not swallow)."""

    def columns(self, table: str) -> Sequence[str] | None:
        raise RuntimeError(f"no catalogue for {table}")


def test_a_catalogue_that_raises_fails_closed_and_is_never_reused(
    source: Path, fresh: list[str]
) -> None:
    scope = _policy("sqlite", "t").scope("read")
    star = "SELECT * FROM t"
    good = StaticCatalog({"main.t": ("id", "nome")})
    assert check(star, scope, catalog=good).action == "allow"
    for _ in range(2):
        decision = check(star, scope, catalog=_Raising())
        assert decision.action == "block"
        assert decision.statements[0].problem == "cannot be analysed (RuntimeError)"
    assert fresh == [star, star, star]
    assert (
        len(
            analysis_module._ANALYSES.variants_of((star, "sqlite", analysis_module.read_key(scope)))
        )
        == 1
    )
    assert check(star, scope, catalog=good).action == "allow"
    assert len(fresh) == 3
    # a statement that asks the catalogue nothing never asks it, so it does not raise
    assert check("SELECT 1", scope, catalog=good).action == "allow"
    assert check("SELECT 1", scope, catalog=_Raising()).action == "allow"

    # the connection's catalogue answers None when its query fails: '*' stays unexpanded
    closed = sqlite3.connect(source)
    closed.close()
    decision = check(star, scope, catalog=DatabaseCatalog(closed, "sqlite"))
    assert decision.action == "block"
    assert decision.statements[0].columns_read["main.t"] == frozenset({"*"})


def test_clear_cache_empties_analyses_and_decisions(
    source: Path, audit: AuditStore, fresh: list[str]
) -> None:
    with _sqlite(source, audit) as conn:
        conn.execute(SELECT, (1,)).fetchall()
    assert len(analysis_module._ANALYSES) == 1
    assert len(_DECISIONS) == 1
    clear_cache()
    assert len(analysis_module._ANALYSES) == 0
    assert len(_DECISIONS) == 0
    with _sqlite(source, audit) as conn:
        conn.execute(SELECT, (1,)).fetchall()
    assert fresh == [SELECT, SELECT]


def test_threads_filling_the_same_text_keep_a_consistent_cache() -> None:
    scope = _policy("sqlite", "t").scope("read")
    star = "SELECT * FROM t"
    catalogs = [
        StaticCatalog({"main.t": ("id", "nome")}),
        StaticCatalog({"main.t": ("id", "nome", "cpf")}),
    ]
    expected = ["allow", "block"]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def run(i: int) -> None:
        try:
            start.wait()
            for n in range(200):
                k = (i + n) % 2
                assert check(star, scope, catalog=catalogs[k]).action == expected[k]
                if n % 50 == 0:
                    clear_cache()
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    key = (star, "sqlite", analysis_module.scope_key(scope), frozenset[str]())
    assert len(_DECISIONS.variants_of(key)) <= 2
