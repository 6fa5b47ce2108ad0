"""The LGPD pages and JSON API inside Airflow's own app: real tokens, a real SQLite store.

Airflow's app (``create_app``) mounts the plugin from its entry point; users log in through
SimpleAuthManager's ``POST /auth/token``; approval requests and audit records come from a
real GuardedConnection running statements against SQLite.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Airflow reads its home when first imported; keep it out of the user's ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="lgpd-airflow-home-"))

from faker import Faker
from fastapi.testclient import TestClient

from lgpd_tasks.approvals import ApprovalStore, Status
from lgpd_tasks.audit import AuditStore
from lgpd_tasks.connection import connect
from lgpd_tasks.errors import ApprovalRequired
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, parse_policy

POLICY = """\
version: 1
dialect: sqlite
purposes:
  contractor_report:
    legal_basis: legitimate_interest
    retention: 180d
    data_subjects: [customers]
scopes:
  extract:
    purpose: contractor_report
    read:
      customers: [id, nome, cpf, email, cidade]
  purge:
    purpose: contractor_report
    read:
      customers: [id, cidade]
    write:
      customers: "*"
masking:
  columns: {cpf: hmac, email: partial, nome: redact}
  key_env: LGPD_MASKING_KEY
"""

USERS = {"alice": ("user", "alice-pass"), "vera": ("viewer", "vera-pass"), "maria": ("user", "m-p")}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Airflow's api-server app with SimpleAuthManager and three configured users."""
    home = tmp_path_factory.mktemp("airflow-auth")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({name: pw for name, (_, pw) in USERS.items()}))
    with pytest.MonkeyPatch.context() as env:
        env.setenv(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        )
        env.setenv(
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
            ",".join(f"{name}:{role}" for name, (role, _) in USERS.items()),
        )
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        env.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "lgpd-tasks-test-secret-" + "x" * 48)
        from airflow.api_fastapi.app import create_app
        from airflow.utils import db

        db.initdb()  # token checks read Airflow's revoked-token table
        with TestClient(create_app("core")) as test_client:
            yield test_client


@pytest.fixture(scope="module")
def tokens(client: TestClient) -> dict[str, str]:
    out = {}
    for name, (_, password) in USERS.items():
        reply = client.post("/auth/token", json={"username": name, "password": password})
        assert reply.status_code == 201, reply.text
        out[name] = reply.json()["access_token"]
    return out


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def signed_in(client: TestClient, token: str) -> Iterator[TestClient]:
    """The browser's session: Airflow's ``_token`` cookie."""
    client.cookies.clear()
    client.cookies.set("_token", token)
    try:
        yield client
    finally:
        client.cookies.clear()


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/audit.db"
    AuditStore.from_url(url).init()  # as `lgpd-tasks db init` or a first task would
    monkeypatch.setenv("LGPD_AUDIT_URL", url)
    monkeypatch.delenv("LGPD_POLICY_FILE", raising=False)
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret")
    return url


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY, "policy.yaml")


@pytest.fixture
def source(tmp_path: Path) -> str:
    path = tmp_path / "source.db"
    fake = Faker("pt_BR")
    Faker.seed(11)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER, nome TEXT, cpf TEXT, email TEXT, cidade TEXT)")
    db.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
        [(i, fake.name(), fake.cpf(), fake.email(), fake.city()) for i in range(1, 11)],
    )
    db.commit()
    db.close()
    return f"sqlite:///{path}"


def ask_for_purge(
    source: str,
    policy: Policy,
    store_url: str,
    *,
    run_id: str = "manual__1",
    user: str | None = None,
) -> str:
    """Run an unbounded DELETE the way a task would: it opens an approval request."""
    who = TaskIdentity("airflow", "contractor", "purge", run_id=run_id, user=user)
    with (
        connect(source, policy=policy, scope="purge", identity=who, audit=store_url) as conn,
        pytest.raises(ApprovalRequired) as waiting,
    ):
        conn.execute("DELETE FROM customers")
    assert waiting.value.request_id
    return waiting.value.request_id


def run_extract(source: str, policy: Policy, store_url: str, run_id: str = "manual__1") -> None:
    who = TaskIdentity("airflow", "contractor", "extract", run_id=run_id)
    with connect(source, policy=policy, scope="extract", identity=who, audit=store_url) as conn:
        conn.execute("SELECT id, nome, cpf, cidade FROM customers WHERE cidade <> 'x'").fetchall()


# -- registration ---------------------------------------------------------------------------


def test_plugin_registers_app_nav_links_and_task_instance_tab(
    client: TestClient, tokens: dict[str, str]
) -> None:
    reply = client.get("/api/v2/plugins", headers=bearer(tokens["alice"]))
    assert reply.status_code == 200
    (plugin,) = [p for p in reply.json()["plugins"] if p["name"] == "lgpd_tasks"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/lgpd"
    views = {v["url_route"]: v for v in plugin["external_views"]}
    assert views["lgpd-approvals"]["category"] == "LGPD"
    assert views["lgpd-approvals"]["href"] == "/lgpd/approvals"
    assert views["lgpd-audit"]["href"] == "/lgpd/audit"
    tab = views["lgpd-task-audit"]
    assert tab["destination"] == "task_instance"
    assert "dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}" in tab["href"]


# -- approvals API --------------------------------------------------------------------------


def test_pending_request_shows_statement_scope_purpose_risk_requester_and_expiry(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    request_id = ask_for_purge(source, policy, store_url)
    reply = client.get("/lgpd/api/approvals?status=pending", headers=bearer(tokens["alice"]))
    assert reply.status_code == 200
    (item,) = reply.json()["approvals"]
    assert item["id"] == request_id
    assert item["normalized"] == "DELETE FROM customers"
    assert (item["scope"], item["purpose"]) == ("purge", "contractor_report")
    assert item["reasons"][0]["rule"] == "unbounded_write"
    assert item["requested_by"] == "airflow:contractor.purge"
    assert item["expires_at"] > item["requested_at"]
    assert item["may_decide"] is True
    one = client.get(f"/lgpd/api/approvals/{request_id}", headers=bearer(tokens["alice"]))
    assert one.json()["id"] == request_id


def test_logged_in_user_approves_as_a_verified_airflow_approver(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    request_id = ask_for_purge(source, policy, store_url)
    reply = client.post(
        f"/lgpd/api/approvals/{request_id}/approve",
        json={"reason": "staging reset for the monthly load"},
        headers=bearer(tokens["alice"]),
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "approved"
    stored = ApprovalStore.from_url(store_url).get(request_id)
    assert stored.status is Status.APPROVED
    (decision,) = stored.decisions
    assert (decision.approver, decision.verified, decision.issuer) == ("alice", True, "airflow")
    # the task's next attempt runs the approved statement once
    who = TaskIdentity("airflow", "contractor", "purge", run_id="manual__1")
    with connect(source, policy=policy, scope="purge", identity=who, audit=store_url) as conn:
        assert conn.execute("DELETE FROM customers").rowcount == 10
    assert AuditStore.from_url(store_url).verify().ok


def test_deny_needs_a_reason_and_then_records_it(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    request_id = ask_for_purge(source, policy, store_url)
    url = f"/lgpd/api/approvals/{request_id}/deny"
    empty = client.post(url, json={"reason": "  "}, headers=bearer(tokens["alice"]))
    assert empty.status_code == 422
    assert "reason" in empty.json()["detail"]
    assert ApprovalStore.from_url(store_url).get(request_id).status is Status.PENDING
    denied = client.post(url, json={"reason": "purge is not due"}, headers=bearer(tokens["alice"]))
    assert denied.status_code == 200
    assert denied.json()["status"] == "denied"
    assert denied.json()["decisions"][0]["reason"] == "purge is not due"


def test_requester_cannot_approve_own_request(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    request_id = ask_for_purge(source, policy, store_url, user="maria")
    listed = client.get(f"/lgpd/api/approvals/{request_id}", headers=bearer(tokens["maria"]))
    assert listed.json()["own_request"] is True
    assert listed.json()["may_decide"] is False
    reply = client.post(
        f"/lgpd/api/approvals/{request_id}/approve", json={}, headers=bearer(tokens["maria"])
    )
    assert reply.status_code == 409
    assert "cannot decide" in reply.json()["detail"]
    assert ApprovalStore.from_url(store_url).get(request_id).status is Status.PENDING


def test_viewer_sees_requests_but_cannot_decide(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    request_id = ask_for_purge(source, policy, store_url)
    seen = client.get("/lgpd/api/approvals", headers=bearer(tokens["vera"]))
    assert [a["id"] for a in seen.json()["approvals"]] == [request_id]
    assert seen.json()["approvals"][0]["may_decide"] is False
    reply = client.post(
        f"/lgpd/api/approvals/{request_id}/approve", json={}, headers=bearer(tokens["vera"])
    )
    assert reply.status_code == 403
    assert ApprovalStore.from_url(store_url).get(request_id).status is Status.PENDING


def test_a_decided_request_cannot_be_decided_again(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    request_id = ask_for_purge(source, policy, store_url)
    url = f"/lgpd/api/approvals/{request_id}/approve"
    assert client.post(url, json={}, headers=bearer(tokens["alice"])).status_code == 200
    again = client.post(url, json={}, headers=bearer(tokens["maria"]))
    assert again.status_code == 409
    assert "already approved" in again.json()["detail"]


def test_policy_approvers_list_is_enforced(
    client: TestClient,
    tokens: dict[str, str],
    source: str,
    policy: Policy,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY + "approvals:\n  approvers: [maria]\n")
    monkeypatch.setenv("LGPD_POLICY_FILE", str(policy_file))
    request_id = ask_for_purge(source, policy, store_url)
    url = f"/lgpd/api/approvals/{request_id}/approve"
    refused = client.post(url, json={}, headers=bearer(tokens["alice"]))
    assert refused.status_code == 409
    assert "not among the policy's approvers" in refused.json()["detail"]
    assert client.post(url, json={}, headers=bearer(tokens["maria"])).status_code == 200


def test_unknown_request_is_404_and_bad_status_is_422(
    client: TestClient, tokens: dict[str, str], store_url: str
) -> None:
    missing = client.get("/lgpd/api/approvals/apr_nope", headers=bearer(tokens["alice"]))
    assert missing.status_code == 404
    bad = client.get("/lgpd/api/approvals?status=maybe", headers=bearer(tokens["alice"]))
    assert bad.status_code == 422
    assert "pending" in bad.json()["detail"]


def test_a_store_that_does_not_exist_is_not_created_by_the_pages(
    client: TestClient,
    tokens: dict[str, str],
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mistyped audit URL must not turn into an empty store that shows no approvals."""
    monkeypatch.setenv("LGPD_AUDIT_URL", f"sqlite:///{tmp_path}/typo.db")
    page = client.get("/lgpd/approvals", headers=bearer(tokens["alice"]))
    assert page.status_code == 503
    assert "no such file" in page.text
    assert "lgpd-tasks db init" in page.text
    api = client.get("/lgpd/api/approvals", headers=bearer(tokens["alice"]))
    assert api.status_code == 503
    assert not (tmp_path / "typo.db").exists()


def test_requests_from_outside_airflow_are_not_listed(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    who = TaskIdentity.for_cli("joana")
    with (
        connect(source, policy=policy, scope="purge", identity=who, audit=store_url) as conn,
        pytest.raises(ApprovalRequired) as waiting,
    ):
        conn.execute("DELETE FROM customers")
    listed = client.get("/lgpd/api/approvals", headers=bearer(tokens["alice"]))
    assert listed.json()["approvals"] == []
    one = client.get(
        f"/lgpd/api/approvals/{waiting.value.request_id}", headers=bearer(tokens["alice"])
    )
    assert one.status_code == 404


# -- authentication and forgery -------------------------------------------------------------


def test_api_needs_a_login_and_pages_send_the_browser_to_it(
    client: TestClient, store_url: str
) -> None:
    assert client.get("/lgpd/api/approvals").status_code == 401
    page = client.get("/lgpd/approvals", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/auth/login")
    assert "next=" in page.headers["location"]
    forged = client.get("/lgpd/api/approvals", headers=bearer("not-a-token"))
    assert forged.status_code in {401, 403}


def test_cookie_decision_from_another_site_is_refused(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    request_id = ask_for_purge(source, policy, store_url)
    url = f"/lgpd/api/approvals/{request_id}/approve"
    with signed_in(client, tokens["alice"]) as browser:
        foreign = browser.post(url, json={}, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        assert browser.post(url, json={}).status_code == 403  # no Origin, no Referer
        # an empty bearer header: Airflow falls back to the cookie, so the checks still apply
        for empty in ("Bearer ", "Bearer", "bearer   "):
            sneaky = browser.post(
                url, json={}, headers={"Origin": "https://evil.example", "Authorization": empty}
            )
            assert sneaky.status_code in {401, 403}
        assert ApprovalStore.from_url(store_url).get(request_id).status is Status.PENDING
        same = browser.post(url, json={}, headers={"Origin": "http://testserver"})
        assert same.status_code == 200


def test_pages_may_be_framed_by_airflow_only(
    client: TestClient, tokens: dict[str, str], store_url: str
) -> None:
    # Approve is one click away: no other site may show the page in a frame
    with signed_in(client, tokens["alice"]) as browser:
        for path in ("/lgpd/approvals", "/lgpd/audit", "/lgpd/api/approvals"):
            response = browser.get(path)
            assert response.status_code == 200
            assert response.headers["x-frame-options"] == "SAMEORIGIN"
            assert response.headers["content-security-policy"] == "frame-ancestors 'self'"


def test_form_post_needs_the_page_token_and_redirects_back(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    request_id = ask_for_purge(source, policy, store_url)
    url = f"/lgpd/api/approvals/{request_id}/approve"
    origin = {"Origin": "http://testserver"}
    with signed_in(client, tokens["alice"]) as browser:
        page = browser.get("/lgpd/approvals")
        assert page.status_code == 200
        token = _hidden(page.text, "csrf_token")
        stale = browser.post(
            url,
            data={"csrf_token": "0" * 64, "reason": "ok"},
            headers=origin,
            follow_redirects=False,
        )
        assert stale.status_code == 403
        done = browser.post(
            url,
            data={"csrf_token": token, "reason": "ok", "next": "/lgpd/approvals?status=decided"},
            headers=origin,
            follow_redirects=False,
        )
    assert done.status_code == 303
    assert done.headers["location"] == "/lgpd/approvals?status=decided"
    assert ApprovalStore.from_url(store_url).get(request_id).status is Status.APPROVED


def test_form_deny_without_reason_shows_the_error_on_the_page(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    request_id = ask_for_purge(source, policy, store_url)
    with signed_in(client, tokens["alice"]) as browser:
        token = _hidden(browser.get("/lgpd/approvals").text, "csrf_token")
        reply = browser.post(
            f"/lgpd/api/approvals/{request_id}/deny",
            data={"csrf_token": token, "reason": ""},
            headers={"Origin": "http://testserver"},
        )
    assert reply.status_code == 422
    assert "a denial needs a reason" in reply.text
    assert 'role="alert"' in reply.text
    assert ApprovalStore.from_url(store_url).get(request_id).status is Status.PENDING


# -- pages ----------------------------------------------------------------------------------


def test_approvals_page_lists_pending_with_approve_and_deny(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    request_id = ask_for_purge(source, policy, store_url)
    with signed_in(client, tokens["alice"]) as browser:
        page = browser.get("/lgpd/approvals")
        decided = browser.get("/lgpd/approvals?status=decided")
    assert page.status_code == 200
    for expected in (
        request_id,
        "DELETE FROM customers",
        "purge",
        "contractor_report",
        "unbounded_write",
        "airflow:contractor.purge",
        ">Approve</button>",
        ">Deny</button>",
        'action="/lgpd/api/approvals/',
    ):
        assert expected in page.text, expected
    assert request_id not in decided.text
    with signed_in(client, tokens["vera"]) as browser:
        viewer = browser.get("/lgpd/approvals").text
    assert ">Approve</button>" not in viewer
    assert "cannot approve" in viewer


def test_audit_api_filters_by_dag_run_task_and_decision(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    run_extract(source, policy, store_url, run_id="manual__1")
    run_extract(source, policy, store_url, run_id="manual__2")
    ask_for_purge(source, policy, store_url, run_id="manual__2")
    headers = bearer(tokens["alice"])
    everything = client.get("/lgpd/api/audit", headers=headers).json()["records"]
    assert {r["task"] for r in everything} >= {"extract", "purge"}
    run2 = client.get(
        "/lgpd/api/audit?dag_id=contractor&run_id=manual__2&task_id=extract", headers=headers
    ).json()["records"]
    assert [(r["run_id"], r["task"], r["kind"]) for r in run2] == [
        ("manual__2", "extract", "statement")
    ]
    assert run2[0]["status"] == "ok"
    assert run2[0]["rows"] == 10
    requested = client.get("/lgpd/api/audit?decision=requested", headers=headers).json()
    assert [r["task"] for r in requested["records"]] == ["purge"]
    assert client.get("/lgpd/api/audit?dag_id=other", headers=headers).json()["records"] == []


def test_audit_record_shows_tables_columns_and_lineage(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    run_extract(source, policy, store_url)
    headers = bearer(tokens["alice"])
    (listed,) = client.get("/lgpd/api/audit?task_id=extract", headers=headers).json()["records"]
    record = client.get(f"/lgpd/api/audit/{listed['record_id']}", headers=headers).json()
    (statement,) = record["statements"]
    assert any("customers" in t for t in statement["tables_read"])
    read = " ".join(statement["columns_read"])
    for column in ("nome", "cpf", "cidade"):
        assert column in read
    targets = {edge["target"] for edge in statement["lineage"]}
    assert {"nome", "cpf"} <= {t.rsplit(".", 1)[-1] for t in targets}
    with signed_in(client, tokens["alice"]) as browser:
        page = browser.get(f"/lgpd/audit/{listed['record_id']}")
    assert page.status_code == 200
    assert "Column lineage" in page.text
    assert "Tables read" in page.text
    # masked values only: no CPF from the source reaches the page
    db = sqlite3.connect(source.removeprefix("sqlite:///"))
    cpfs = [row[0] for row in db.execute("SELECT cpf FROM customers")]
    db.close()
    assert not any(cpf in page.text for cpf in cpfs)
    missing = client.get("/lgpd/api/audit/no-such-record", headers=headers)
    assert missing.status_code == 404


def test_audit_page_filters_and_links_records(
    client: TestClient, tokens: dict[str, str], source: str, policy: Policy, store_url: str
) -> None:
    run_extract(source, policy, store_url)
    with signed_in(client, tokens["alice"]) as browser:
        page = browser.get("/lgpd/audit?dag_id=contractor&task_id=extract&embed=1")
    assert page.status_code == 200
    assert 'value="contractor"' in page.text
    assert "/lgpd/audit/" in page.text
    assert 'class="topbar"' not in page.text  # framed in a task instance tab: no own header


# -- where the store comes from -------------------------------------------------------------


def test_store_comes_from_the_lgpd_audit_connection(
    client: TestClient,
    tokens: dict[str, str],
    source: str,
    policy: Policy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "from-connection.db"
    monkeypatch.delenv("LGPD_AUDIT_URL", raising=False)
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret")
    monkeypatch.setenv(
        "AIRFLOW_CONN_LGPD_AUDIT", json.dumps({"conn_type": "sqlite", "host": str(path)})
    )
    request_id = ask_for_purge(source, policy, f"sqlite:///{path}")
    reply = client.get("/lgpd/api/approvals", headers=bearer(tokens["alice"]))
    assert [a["id"] for a in reply.json()["approvals"]] == [request_id]


def test_no_store_configured_is_503_naming_both_settings(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LGPD_AUDIT_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_LGPD_AUDIT", raising=False)
    reply = client.get("/lgpd/api/approvals", headers=bearer(tokens["alice"]))
    assert reply.status_code == 503
    assert "LGPD_AUDIT_URL" in reply.json()["detail"]
    assert "lgpd_audit" in reply.json()["detail"]


def _hidden(html: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def test_postgres_connection_becomes_a_postgresql_url() -> None:
    from airflow.models.connection import Connection
    from lgpd_tasks_airflow.plugin.stores import connection_url

    conn = Connection(
        conn_id="lgpd_audit",
        conn_type="postgres",
        host="127.0.0.1",
        port=5432,
        login="audit",
        password="s3cr@t",
        schema="lgpd",
    )
    assert connection_url(conn) == "postgresql://audit:s3cr%40t@127.0.0.1:5432/lgpd"
    explicit = Connection(
        conn_id="lgpd_audit", conn_type="generic", extra=json.dumps({"url": "sqlite:///a.db"})
    )
    assert connection_url(explicit) == "sqlite:///a.db"


def test_loading_the_plugin_builds_no_web_app_and_touches_no_store() -> None:
    # every Airflow process loads plugins; only the api-server should pay for the pages
    code = (
        "import sys\n"
        "from lgpd_tasks_airflow.plugin import LgpdPlugin\n"
        "assert LgpdPlugin.fastapi_apps[0]['url_prefix'] == '/lgpd'\n"
        "assert 'lgpd_tasks_airflow.plugin.app' not in sys.modules\n"
        "assert 'lgpd_tasks_airflow.plugin.stores' not in sys.modules\n"
    )
    env = {**os.environ, "LGPD_AUDIT_URL": "sqlite:////nonexistent/dir/audit.db"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
