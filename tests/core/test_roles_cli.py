"""``lgpd-tasks roles``: issue a scoped role from the shell, use it, revoke it, sweep orphans."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.cli import main
from lgpd_tasks.credentials import PostgresRoleBroker, libpq_url

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.postgres


@pytest.fixture
def setup(postgres_dsn: str, pg_schema: str, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".cidades (id int, nome text, cpf text)')
        conn.execute(f"INSERT INTO \"{pg_schema}\".cidades VALUES (1, 'Recife', '111')")
    prefix = f"lgpd_c{uuid.uuid4().hex[:8]}_"
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"""\
version: 1
dialect: postgres
purposes:
  geo:
    legal_basis: legitimate_interest
    retention: 30d
scopes:
  geo.read:
    purpose: geo
    read:
      {pg_schema}.cidades: [id, nome]
credentials:
  role_prefix: {prefix}
"""
    )
    yield policy, prefix
    with PostgresRoleBroker(postgres_dsn, role_prefix=prefix) as broker:
        broker.sweep(now=datetime.now(UTC) + timedelta(days=365))


def test_roles_issue_use_and_revoke_in_process(
    postgres_dsn: str,
    pg_schema: str,
    setup: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    policy, prefix = setup
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    code = main(
        [
            "roles",
            "issue",
            "--db",
            postgres_dsn,
            "--policy",
            str(policy),
            "--scope",
            "geo.read",
            "--ttl",
            "5m",
            "--as",
            "maria",
            "--format",
            "json",
            "--audit",
            audit_url,
        ]
    )
    assert code == 0
    issued = json.loads(capsys.readouterr().out)
    assert issued["role"].startswith(prefix)
    assert issued["principal"] == "cli:maria"
    with psycopg.connect(libpq_url(issued["url"])) as conn:
        assert conn.execute(f'SELECT nome FROM "{pg_schema}".cidades').fetchall() == [("Recife",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'SELECT cpf FROM "{pg_schema}".cidades')
    assert (
        main(
            [
                "roles",
                "revoke",
                issued["role"],
                "--db",
                postgres_dsn,
                "--policy",
                str(policy),
                "--audit",
                audit_url,
                "--as",
                "joao",
            ]
        )
        == 0
    )
    assert "revoked" in capsys.readouterr().out
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(libpq_url(issued["url"]))
    events = AuditStore.from_url(audit_url).entries(EntryFilter(kind="credential"))
    assert [(e.details["event"], e.details["role"], e.principal) for e in events] == [
        ("issued", issued["role"], "cli:maria"),
        ("revoked", issued["role"], "cli:joao"),
    ]
    assert events[0].scope == "geo.read"
    assert issued["url"].split("@")[0].split(":")[-1] not in str([e.details for e in events])


def test_roles_revoke_refuses_a_role_outside_the_prefix(
    postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["roles", "revoke", "postgres", "--db", postgres_dsn]) == 1
    assert "does not start with the task-role prefix" in capsys.readouterr().err


def test_roles_sweep_lists_what_it_dropped(
    postgres_dsn: str, setup: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    policy, _ = setup
    roles = []
    for _ in range(3):
        main(
            [
                "roles",
                "issue",
                "--db",
                postgres_dsn,
                "--policy",
                str(policy),
                "--scope",
                "geo.read",
                "--format",
                "json",
            ]
        )
        roles.append(json.loads(capsys.readouterr().out)["role"])
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        # the worker crashed mid-revoke for one role, and another has run out its time
        conn.execute(f'ALTER ROLE "{roles[0]}" NOLOGIN')
        conn.execute(
            'COMMENT ON ROLE "{}" IS {}'.format(
                roles[1],
                "'"
                + json.dumps(
                    {
                        "lgpd_tasks": 1,
                        "expires_at": "2000-01-01T00:00:00+00:00",
                        "attempt": "x",
                        "scope": "geo.read",
                        "db": "test",
                        "owner": "lgpd_task_owner",
                    }
                )
                + "'",
            )
        )
    assert (
        main(["roles", "sweep", "--db", postgres_dsn, "--policy", str(policy), "--format", "json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert {(r["role"], r["reason"]) for r in report["dropped"]} == {
        (roles[0], "revoke interrupted"),
        (roles[1], "expired"),
    }
    assert report["kept"] == [roles[2]]


def test_roles_issue_for_an_unknown_scope_is_a_usage_error(
    postgres_dsn: str, setup: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    policy, _ = setup
    code = main(
        ["roles", "issue", "--db", postgres_dsn, "--policy", str(policy), "--scope", "nope"]
    )
    assert code == 2
    assert "unknown scope 'nope'" in capsys.readouterr().err


def test_roles_console_script_prints_a_usable_url(
    postgres_dsn: str, pg_schema: str, setup: tuple[Path, str]
) -> None:
    policy, _ = setup
    script = Path(sys.executable).parent / "lgpd-tasks"
    done = subprocess.run(
        [
            str(script),
            "roles",
            "issue",
            "--db",
            postgres_dsn,
            "--policy",
            str(policy),
            "--scope",
            "geo.read",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    url = done.stdout.strip()
    assert "expires at" in done.stderr
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute(f'SELECT id FROM "{pg_schema}".cidades').fetchall() == [(1,)]
        role = conn.info.user
    subprocess.run(
        [str(script), "roles", "revoke", role, "--db", postgres_dsn, "--policy", str(policy)],
        check=True,
        timeout=60,
        capture_output=True,
    )
