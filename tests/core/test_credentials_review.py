"""The credentials broker against the real PostgreSQL: findings of the broker and CLI review."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy.engine import make_url

from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.cli import main
from lgpd_tasks.connection import connect
from lgpd_tasks.credentials import (
    PostgresRoleBroker,
    StaticBroker,
    broker_from_policy,
    libpq_url,
    redact_url,
)
from lgpd_tasks.credentials.tokens import TaskTokenVerifier, TokenKey
from lgpd_tasks.errors import CredentialError, StatementFailed, TokenError
from lgpd_tasks.evidence.subjects import SubjectHasher
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, parse_policy

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.postgres

WHO = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=1)
ADMIN_SECRET = "AdminS3cret-never-shown"


def _policy_text(schema: str, prefix: str) -> str:
    return f"""\
version: 1
dialect: postgres
purposes:
  report:
    legal_basis: legitimate_interest
    retention: 30d
scopes:
  extract:
    purpose: report
    read:
      {schema}.customers: [id, cidade]
  stash:
    purpose: report
    read:
      {schema}.customers: "*"
credentials:
  broker: postgres_role
  ttl: 10m
  role_prefix: {prefix}
masking:
  key_env: LGPD_MASKING_KEY
"""


@dataclass
class Env:
    dsn: str
    schema: str
    policy: Policy
    path: Path
    prefix: str

    def broker(self, url: str | None = None, **kwargs: Any) -> PostgresRoleBroker:
        return PostgresRoleBroker(url or self.dsn, role_prefix=self.prefix, **kwargs)

    def admin(self, database: str | None = None) -> Any:
        dsn = self.dsn
        if database:
            dsn = make_url(dsn).set(database=database).render_as_string(hide_password=False)
        return psycopg.connect(dsn, autocommit=True)


@pytest.fixture
def env(
    postgres_dsn: str, pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    monkeypatch.setenv("LGPD_MASKING_KEY", "review-test-key-0123456789abcdef")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".customers (id int, nome text, cpf text, cidade text);'
            f"INSERT INTO \"{pg_schema}\".customers VALUES (1, 'Ana', '529.982.247-25', 'Recife')"
        )
    prefix = f"lgpd_r{uuid.uuid4().hex[:8]}_"
    text = _policy_text(pg_schema, prefix)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    setup = Env(postgres_dsn, pg_schema, parse_policy(text), path, prefix)
    yield setup
    with setup.broker() as broker:
        for role in broker.list_roles():
            for database in ("postgres", make_url(postgres_dsn).database):
                with setup.admin(database) as conn:
                    conn.execute(
                        "SELECT lo_unlink(m.oid) FROM pg_largeobject_metadata m"
                        " JOIN pg_roles r ON r.oid = m.lomowner WHERE r.rolname = %s",
                        (role.name,),
                    )
        broker.sweep(now=datetime.now(UTC) + timedelta(days=1))


def _query_login_url(dsn: str, password: str = ADMIN_SECRET) -> str:
    """``dsn`` with its user (and a password) moved into the query string."""
    url = make_url(dsn)
    moved = url.set(username=None, password=None).update_query_dict(
        {"user": url.username or "postgres", "password": password}
    )
    return moved.render_as_string(hide_password=False)


# -- 1. the administrator's login in the query string ------------------------------------


def test_admin_login_in_the_query_string_never_reaches_the_task(env: Env, tmp_path: Path) -> None:
    admin_url = _query_login_url(env.dsn)
    assert "password=" + ADMIN_SECRET in admin_url
    audit = AuditStore.from_url(f"sqlite:///{tmp_path / 'audit.db'}")
    with connect(admin_url, policy=env.policy, scope="extract", identity=WHO, audit=audit) as conn:
        # the task logs in as its own role, not as the administrator the query names
        assert conn.execute("SELECT current_user, session_user").fetchall() == [
            (conn.role, conn.role)
        ]
        conn._guard_enabled = False  # PostgreSQL alone must refuse the ungranted column
        with pytest.raises(StatementFailed) as info:
            conn.execute(f'SELECT cpf FROM "{env.schema}".customers')
        assert info.value.sqlstate == "42501"
        conn.rollback()
    texts = [str(e.details) for e in audit.entries(EntryFilter())]
    assert texts
    assert all(ADMIN_SECRET not in t for t in texts)
    assert any("password=***" in t for t in texts)  # the audit's target, password hidden

    with env.broker(admin_url) as broker:
        cred = broker.issue(WHO, env.policy.scope("extract"))
        assert ADMIN_SECRET not in cred.url
        assert "user=" not in cred.url
        for shown in (cred.redacted_url, repr(cred), str(cred), str(cred.to_dict()), repr(broker)):
            assert ADMIN_SECRET not in shown
        with psycopg.connect(libpq_url(cred.url)) as task:
            assert task.execute("SELECT current_user").fetchone() == (cred.role,)
        broker.revoke(cred)


def test_every_url_redaction_hides_query_string_passwords() -> None:
    url = f"postgresql://db:5432/test?user=admin&password={ADMIN_SECRET}&sslmode=require"
    for shown in (
        redact_url(url),
        redact_url(url.replace(":5432", ":notaport")),
        redact_url(url.replace("password=", "sslpassword=")),
        redact_url(url.replace("password=", "passfile=")),
        repr(StaticBroker(url)),
        repr(PostgresRoleBroker(url)),
    ):
        assert ADMIN_SECRET not in shown
        assert "db" in shown
    assert redact_url(url) == "postgresql://db:5432/test?password=***&sslmode=require&user=admin"


def test_database_named_in_the_query_string_is_refused() -> None:
    with pytest.raises(CredentialError, match="dbname="):
        PostgresRoleBroker("postgresql://postgres@127.0.0.1:5432/test?dbname=postgres")


# -- 2. large objects do not outlive the task role ----------------------------------------


def test_revoke_and_sweep_unlink_the_large_objects_a_task_role_made(env: Env) -> None:
    with env.broker() as broker:
        stash_scope = env.policy.scope("stash")
        cred = broker.issue(WHO, stash_scope)
        swept = broker.issue(WHO, stash_scope, ttl=timedelta(minutes=1))
        oids = []
        for made in (cred, swept):
            with psycopg.connect(libpq_url(made.url), autocommit=True) as task:
                (oid,) = task.execute(
                    "SELECT lo_from_bytea(0, convert_to((SELECT string_agg(nome || ';' || cpf,"
                    f" ',') FROM \"{env.schema}\".customers), 'UTF8'))"
                ).fetchone() or (None,)
                task.execute(f"GRANT SELECT ON LARGE OBJECT {int(oid)} TO PUBLIC")
                oids.append(int(oid))
        broker.revoke(cred)
        report = broker.sweep(now=datetime.now(UTC) + timedelta(minutes=5))
        assert [r.name for r in report.dropped] == [swept.role]
        with env.admin() as conn:
            left = conn.execute(
                "SELECT oid FROM pg_largeobject_metadata WHERE oid = ANY(%s)", (oids,)
            ).fetchall()
        assert left == []
        # a later task of a scope without cpf cannot read what the first one stashed
        later = broker.issue(WHO, env.policy.scope("extract"))
        with (
            psycopg.connect(libpq_url(later.url), autocommit=True) as task,
            pytest.raises(psycopg.errors.UndefinedObject, match="does not exist"),
        ):
            task.execute(f"SELECT lo_get({oids[0]})")
        broker.revoke(later)


# -- 3. a revoke that cannot drop the role still locks it out ------------------------------


def test_failed_revoke_leaves_the_role_unable_to_log_in_and_names_what_blocks_it(
    env: Env,
) -> None:
    elsewhere = make_url(env.dsn).set(database="postgres")
    with env.broker() as broker:
        cred = broker.issue(WHO, env.policy.scope("extract"))
        other_db = make_url(cred.url).set(database="postgres")
        # PUBLIC holds CONNECT on database postgres by default: the task role gets in there
        with psycopg.connect(libpq_url(other_db), autocommit=True) as task:
            (oid,) = task.execute("SELECT lo_create(0)").fetchone() or (None,)
        session = psycopg.connect(libpq_url(cred.url), autocommit=True)
        try:
            with pytest.raises(CredentialError) as info:
                broker.revoke(cred)
            with pytest.raises(psycopg.OperationalError):
                session.execute("SELECT 1")  # its open session was ended all the same
        finally:
            session.close()
        message = str(info.value)
        assert "1 large object in database 'postgres'" in message
        assert "can no longer log in" in message
        with env.admin() as conn:
            row = conn.execute(
                "SELECT rolcanlogin, rolvaliduntil <= now() FROM pg_roles WHERE rolname = %s",
                (cred.role,),
            ).fetchone()
        assert row == (False, True)
        with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
            psycopg.connect(libpq_url(cred.url))
        # sweep reports it until the object in the other database is gone, then drops it
        report = broker.sweep()
        assert [name for name, _ in report.failed] == [cred.role]
        with psycopg.connect(libpq_url(elsewhere), autocommit=True) as conn:
            conn.execute("SELECT lo_unlink(%s)", (oid,))
        report = broker.sweep()
        assert [(r.name, r.reason) for r in report.dropped] == [(cred.role, "revoke interrupted")]


# -- 4. clear errors, not tracebacks -------------------------------------------------------


def _cli(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as stop:  # argparse's usage errors
        return int(stop.code or 0)


def _audit_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    assert main(["db", "init", "--db", url]) == 0
    return url


def _no_traceback(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_exec_on_a_sqlite_folder_is_a_clear_usage_error(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    static = tmp_path / "static.yaml"
    static.write_text(env.path.read_text().replace("broker: postgres_role", "broker: static"))
    audit = _audit_url(tmp_path)
    code = _cli("exec", "--policy", str(static), "--scope", "extract", "--db",
                f"sqlite:///{tmp_path}", "--audit", audit, "--sql", "select 1")  # fmt: skip
    assert code == 2
    assert "is a folder, not a file" in _no_traceback(capsys)


def test_credential_ttl_is_bounded_everywhere(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issue = ("roles", "issue", "--policy", str(env.path), "--scope", "extract", "--db", env.dsn)
    for ttl, why in (("99999999d", "longer than 1000 years"), ("8d", "at most 1w"),
                     ("0s", "more than zero")):  # fmt: skip
        assert _cli(*issue, "--ttl", ttl) == 2
        assert why in _no_traceback(capsys)
    audit = _audit_url(tmp_path)
    for ttl in ("99999999d", "30d", "0s"):
        policy = tmp_path / f"ttl{ttl}.yaml"
        policy.write_text(env.path.read_text().replace("ttl: 10m", f"ttl: {ttl}"))
        code = _cli("exec", "--policy", str(policy), "--scope", "extract", "--db", env.dsn,
                    "--audit", audit, "--sql", "select 1")  # fmt: skip
        assert code == 2
        assert "credentials.ttl" in _no_traceback(capsys)
    with env.broker() as broker:
        scope = env.policy.scope("extract")
        for ttl in (timedelta(0), timedelta(days=8), timedelta(days=10**8)):
            # an explicit zero is refused, never replaced by the broker's default
            with pytest.raises(CredentialError, match="credential TTL"):
                broker.issue(WHO, scope, ttl=ttl)
        with pytest.raises(CredentialError, match="credential TTL"):
            StaticBroker(env.dsn).issue(WHO, scope, ttl=timedelta(0))
        assert broker.list_roles() == []


def test_audit_commands_refuse_out_of_range_numbers_and_durations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit = _audit_url(tmp_path)
    export = ("audit", "export", "--db", audit, "--to", f"file://{tmp_path / 'out'}")
    for argv in (
        ("audit", "tail", "--db", audit, "-n", "99999999999999999999999"),
        (*export, "--retention", "1000000y"),
        (*export, "--batch-records", "0"),
        ("audit", "export", "--db", audit, "--to", "ftp://x"),
        ("audit", "export", "--db", audit, "--to", "s3://"),
        ("audit", "purge", "--db", audit, "--before", "2030-13-01"),
    ):
        assert _cli(*argv) == 2, argv
        _no_traceback(capsys)
    assert not (tmp_path / "out").exists()


def test_subject_report_with_binary_stdin_is_a_usage_error(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    audit = _audit_url(tmp_path)
    stdin = io.TextIOWrapper(
        io.BytesIO(b"\xff\xfe529\x80\n"), encoding="utf-8", errors="surrogateescape"
    )
    monkeypatch.setattr("sys.stdin", stdin)
    assert _cli("report", "subject", "--audit", audit) == 2
    assert "not UTF-8" in _no_traceback(capsys)
    # the library hashes such text instead of raising
    hasher = SubjectHasher(b"k" * 32)
    assert len(hasher.subject("\udcff529")) == 16


def test_signed_task_token_with_an_unrepresentable_exp_is_a_token_error() -> None:
    key = TokenKey.generate("k1")
    token = jwt.encode(
        {"iss": "i", "aud": "a", "sub": "x", "iat": 0, "nbf": 0, "exp": 10**15, "jti": "j",
         "scope": "s", "purpose": "p"},
        key.signing,
        algorithm=key.algorithm,
        headers={"kid": "k1", "typ": "lgpd-task+jwt"},
    )  # fmt: skip
    verifier = TaskTokenVerifier([key.public()], issuer="i", audience="a")
    with pytest.raises(TokenError, match="'exp' is not a representable time"):
        verifier.verify(token)


# -- 5. usage errors exit 2 ----------------------------------------------------------------


def test_usage_errors_exit_2(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    audit = _audit_url(tmp_path)
    ropa = ("report", "ropa", "--audit", audit, "--policy", str(env.path))
    assert _cli(*ropa, "--since", "2030-13-01") == 2
    assert "expected a date" in _no_traceback(capsys)
    stdin = io.StringIO("a-token-nobody-should-read\n")
    monkeypatch.setattr("sys.stdin", stdin)
    assert _cli("approvals", "approve", "abc", "--db", audit, "--token", "-") == 2
    assert "--token needs --policy" in _no_traceback(capsys)
    assert stdin.tell() == 0  # refused before the token was read


def test_postgres_role_url_with_a_bad_port_is_named_with_its_password_hidden(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "postgresql://postgres:s3cret-pw@127.0.0.1:notaport/test"
    with pytest.raises(CredentialError) as info:
        broker_from_policy(env.policy, bad)
    assert "postgresql://postgres:***@127.0.0.1:notaport/test" in str(info.value)
    assert "port must be a number" in str(info.value)
    audit = _audit_url(tmp_path)
    code = _cli("exec", "--policy", str(env.path), "--scope", "extract", "--db", bad,
                "--audit", audit, "--sql", "select 1")  # fmt: skip
    assert code == 2
    err = _no_traceback(capsys)
    assert "127.0.0.1:notaport" in err
    assert "s3cret-pw" not in err
    assert "not PostgreSQL" not in err
