"""Shared fixtures: real SQLite files on tmp_path and the PostgreSQL server of DESIGN.md."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_DSN = os.environ.get("LGPD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_problem() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (extra 'postgres')"
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=3):
            return None
    except psycopg.Error as err:
        return f"PostgreSQL at {POSTGRES_DSN} is unreachable: {err}"


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The test server's DSN; fails under CI and skips elsewhere when it is unreachable."""
    problem = _postgres_problem()
    if problem:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI needs PostgreSQL: {problem}")
        pytest.skip(problem)
    return POSTGRES_DSN


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh schema on the test server, dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "source.db"
