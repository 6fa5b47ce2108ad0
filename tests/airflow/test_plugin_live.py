"""The LGPD pages on a real ``airflow api-server``: a user logs in and approves, over HTTP and
from headless Chromium.

The server runs on 127.0.0.1 with its own AIRFLOW_HOME, SimpleAuthManager and two users; it
reads the audit store from ``LGPD_AUDIT_URL``. Statements run through a real GuardedConnection
in this process, so an approval given in the browser is the one the task's retry consumes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from faker import Faker

from lgpd_tasks.approvals import ApprovalStore, Status
from lgpd_tasks.connection import connect
from lgpd_tasks.errors import ApprovalRequired
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import Policy, parse_policy

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
USERS = {"alice": ("user", "alice-pass"), "vera": ("viewer", "vera-pass")}

POLICY = """\
version: 1
dialect: sqlite
purposes:
  contractor_report:
    legal_basis: legitimate_interest
    retention: 180d
    data_subjects: [customers]
scopes:
  purge:
    purpose: contractor_report
    read:
      staging_orders: [id, created_at]
    write:
      staging_orders: "*"
masking:
  key_env: LGPD_MASKING_KEY
"""


@dataclass
class Server:
    url: str
    audit_url: str
    log: Path

    def token(self, user: str) -> str:
        reply = httpx.post(
            f"{self.url}/auth/token",
            json={"username": user, "password": USERS[user][1]},
            timeout=30,
        )
        assert reply.status_code == 201, reply.text
        return str(reply.json()["access_token"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (its workers too), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("airflow-home")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({name: pw for name, (_, pw) in USERS.items()}))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    audit_url = f"sqlite:///{home}/audit.db"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
            f"{name}:{role}" for name, (role, _) in USERS.items()
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "lgpd-tasks-live-test-secret-" + "y" * 48,
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "LGPD_AUDIT_URL": audit_url,
    }
    env.pop("LGPD_POLICY_FILE", None)
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run(
        [airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300
    )
    log = home / "api-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped by this PID
        )
    try:
        # an idle machine starts it in seconds; a loaded 2-core one can take minutes
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                pytest.fail(f"airflow api-server exited:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield Server(url=url, audit_url=audit_url, log=log)
    finally:
        _stop(process)


@pytest.fixture
def policy(monkeypatch: pytest.MonkeyPatch) -> Policy:
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret")
    return parse_policy(POLICY, "policy.yaml")


@pytest.fixture
def staging(tmp_path: Path) -> str:
    path = tmp_path / "staging.db"
    fake = Faker("pt_BR")
    Faker.seed(3)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE staging_orders (id INTEGER, created_at TEXT)")
    db.executemany(
        "INSERT INTO staging_orders VALUES (?, ?)",
        [(i, fake.date_this_year().isoformat()) for i in range(1, 26)],
    )
    db.commit()
    db.close()
    return f"sqlite:///{path}"


def _purge(staging: str, policy: Policy, server: Server, run_id: str) -> int:
    """The purge task's attempt: waits for approval (raises) or runs the DELETE once."""
    who = TaskIdentity("airflow", "contractor_pipeline", "purge_staging", run_id=run_id)
    with connect(
        staging, policy=policy, scope="purge", identity=who, audit=server.audit_url
    ) as conn:
        return int(conn.execute("DELETE FROM staging_orders").rowcount)


def _ask(staging: str, policy: Policy, server: Server, run_id: str) -> str:
    with pytest.raises(ApprovalRequired) as waiting:
        _purge(staging, policy, server, run_id)
    return waiting.value.request_id


def test_logged_in_user_approves_over_http_and_the_task_runs(
    server: Server, staging: str, policy: Policy
) -> None:
    request_id = _ask(staging, policy, server, "manual__http")
    token = server.token("alice")
    headers = {"Authorization": f"Bearer {token}"}
    pending = httpx.get(f"{server.url}/lgpd/api/approvals?status=pending", headers=headers)
    assert pending.status_code == 200, pending.text
    assert request_id in [a["id"] for a in pending.json()["approvals"]]
    viewer = {"Authorization": f"Bearer {server.token('vera')}"}
    refused = httpx.post(
        f"{server.url}/lgpd/api/approvals/{request_id}/approve", json={}, headers=viewer
    )
    assert refused.status_code == 403
    reply = httpx.post(
        f"{server.url}/lgpd/api/approvals/{request_id}/approve",
        json={"reason": "staging is rebuilt nightly"},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    stored = ApprovalStore.from_url(server.audit_url).get(request_id)
    assert stored.status is Status.APPROVED
    assert [(d.approver, d.verified, d.issuer) for d in stored.decisions] == [
        ("alice", True, "airflow")
    ]
    # the task's retry runs the approved statement exactly once
    assert _purge(staging, policy, server, "manual__http") == 25
    assert ApprovalStore.from_url(server.audit_url).get(request_id).consumed_at is not None


def _browser_problem() -> str | None:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        return (
            f"{CHROMIUM} and {CHROMEDRIVER} are missing (apt-get install chromium chromium-driver)"
        )
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    problem = _browser_problem()
    if problem:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI needs the browser: {problem}")
        pytest.skip(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def test_browser_approves_from_the_approvals_page(
    server: Server, staging: str, policy: Policy, browser: object
) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    request_id = _ask(staging, policy, server, "manual__browser")
    ARTIFACTS.mkdir(exist_ok=True)
    # log in as Airflow's login page does: the session is the _token cookie
    browser.get(f"{server.url}/api/v2/monitor/health")
    browser.add_cookie({"name": "_token", "value": server.token("alice"), "path": "/"})

    browser.get(f"{server.url}/lgpd/approvals")
    card = WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, request_id)))
    assert "DELETE FROM staging_orders" in card.text
    assert "unbounded_write" in card.text
    browser.save_screenshot(str(ARTIFACTS / "lgpd-approvals.png"))

    card.find_element(By.NAME, "reason").send_keys("staging is rebuilt nightly")
    card.find_element(By.CSS_SELECTOR, "button.approve").click()
    # wait on the store, not on the old card: while the form posts and the page reloads,
    # Chromium may answer a question about the old node with a generic inspector error
    WebDriverWait(browser, 30).until(
        lambda d: (
            ApprovalStore.from_url(server.audit_url).get(request_id).status is not Status.PENDING
        )
    )
    # then for the reloaded list, which no longer shows the request as pending
    WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda d: (
            d.execute_script("return document.readyState") == "complete"
            and not d.find_elements(By.ID, request_id)
        )
    )
    stored = ApprovalStore.from_url(server.audit_url).get(request_id)
    assert stored.status is Status.APPROVED
    assert [(d.approver, d.reason) for d in stored.decisions] == [
        ("alice", "staging is rebuilt nightly")
    ]

    browser.get(f"{server.url}/lgpd/approvals?status=decided")
    decided = WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, request_id)))
    assert "approved" in decided.text
    browser.save_screenshot(str(ARTIFACTS / "lgpd-approvals-decided.png"))
    browser.execute_script("document.documentElement.setAttribute('data-theme', 'dark')")
    browser.save_screenshot(str(ARTIFACTS / "lgpd-approvals-decided-dark.png"))

    browser.execute_script("document.documentElement.removeAttribute('data-theme')")

    # the run's audit: the approval request and the decision, each linked to its record
    browser.get(f"{server.url}/lgpd/audit?dag_id=contractor_pipeline&run_id=manual__browser")
    rows = WebDriverWait(browser, 30).until(
        ec.presence_of_all_elements_located((By.CSS_SELECTOR, "table.grid tbody tr"))
    )
    assert any("requested" in row.text for row in rows)
    assert any("approved" in row.text for row in rows)
    browser.save_screenshot(str(ARTIFACTS / "lgpd-audit.png"))
    rows[-1].find_element(By.CSS_SELECTOR, "a").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".hash")))
    assert "purge_staging" in browser.page_source
    browser.save_screenshot(str(ARTIFACTS / "lgpd-audit-record.png"))

    # the same page inside Airflow's own UI, reached through the LGPD nav entry
    browser.get(f"{server.url}/plugin/lgpd-approvals")
    frame = WebDriverWait(browser, 60).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='Approvals']"))
    )
    assert "/lgpd/approvals" in (frame.get_attribute("src") or "")
    browser.switch_to.frame(frame)
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "h1")))
    browser.switch_to.default_content()
    time.sleep(1)  # let the UI's fonts and icons settle for the screenshot
    browser.save_screenshot(str(ARTIFACTS / "lgpd-approvals-in-airflow.png"))
