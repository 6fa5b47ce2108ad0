"""`make demo`: the contractor pipeline end to end under `airflow dags test` on SQLite.

Steps: a fresh AIRFLOW_HOME under .demo/, `airflow db migrate`, a synthetic source database
(Faker pt_BR), then `airflow dags test contractor_pipeline` in the background, and an `airflow api-server` on
127.0.0.1 with the LGPD pages. When the purge's approval gate opens its request, a scripted
approver logs in and approves it over the same HTTP API the Approvals page uses; the gate
lets the DELETE run once and the DAG finishes. Last, the run's audit records are printed
and the hash chain verified.

    python examples/airflow/run_demo.py [--customers N] [--approve-in-store]
                                        [--over-http URL --user U --password P]

``--approve-in-store`` skips the api-server and approves in the approvals store directly;
``--over-http`` uses an api-server you run yourself (sharing the demo's audit store).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "airflow"
DAG_ID = "contractor_pipeline"
APPROVER = "demo.approver"
RUN_LIMIT_SECONDS = 300

# lines of the DAG run's log worth showing: what the guard did, the gate, the outcome
SHOWN = re.compile(
    r"Ran statement|Waiting for approval|Approved:|No statement of|lgpd-tasks refused"
    r"|audit store unavailable|DagRun Finished|\[DAG TEST\] end task|Task failed"
)


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def approve_over_http(
    base_url: str, request_id: str, reason: str, *, username: str, password: str
) -> dict[str, Any]:
    """Approve ``request_id`` through the Airflow UI's API, as a logged-in user would.

    Logs in with ``POST /auth/token`` and calls ``POST /lgpd/api/approvals/{id}/approve``
    with ``{"reason": ...}``; the approver recorded is the Airflow user.
    """

    def post(path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            f"{base_url.rstrip('/')}{path}",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return dict(json.loads(reply.read() or b"{}"))

    token = post("/auth/token", {"username": username, "password": password})["access_token"]
    return post(f"/lgpd/api/approvals/{request_id}/approve", {"reason": reason}, token)


def approve_in_store(audit_url: str, request_id: str, reason: str) -> dict[str, Any]:
    """Approve ``request_id`` directly in the approvals store (the audit database)."""
    from lgpd_tasks.approvals import ApprovalStore, Approver

    store = ApprovalStore.from_url(audit_url)
    return store.approve(request_id, Approver(APPROVER), reason).to_dict()


def start_api_server(
    env: dict[str, str], home: Path
) -> tuple[subprocess.Popen[bytes], str, str, str]:
    """An api-server on a free loopback port, with SimpleAuthManager and one approver user."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    password = secrets.token_urlsafe(12)
    passwords = home / "api-server-passwords.json"
    passwords.write_text(json.dumps({APPROVER: password}))
    server_env = {
        **env,
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{APPROVER}:user",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    with (home / "api-server.log").open("wb") as out:
        process = subprocess.Popen(
            [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, url, APPROVER, password


def wait_until_up(process: subprocess.Popen[bytes] | None, url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as reply:
                if reply.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def demo_environment(home: Path, audit_db: Path, source: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LGPD_POLICY_FILE", None)
    env.pop("LGPD_AUDIT_URL", None)
    env.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__XCOM_BACKEND": "lgpd_tasks_airflow.xcom.LgpdMaskingXComBackend",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
            "AIRFLOW__LGPD__POLICY_FILE": str(EXAMPLE / "policy.yaml"),
            "AIRFLOW_CONN_LGPD_AUDIT": json.dumps({"conn_type": "sqlite", "host": str(audit_db)}),
            "AIRFLOW_CONN_CONTRACTOR_SOURCE": json.dumps(
                {"conn_type": "sqlite", "host": str(source)}
            ),
            "LGPD_MASKING_KEY": os.environ.get("LGPD_MASKING_KEY") or secrets.token_hex(16),
            "LGPD_REPORT_BUCKET": os.environ.get("LGPD_REPORT_BUCKET") or str(home / "reports"),
            "CONTRACTOR_GATE_POKE_SECONDS": "2",
        }
    )
    return env


def run_dag(
    env: dict[str, str], log: Path, audit_url: str, args: argparse.Namespace
) -> tuple[int, list[str]]:
    """`airflow dags test` in the background; approve the gate's request when it appears."""
    from lgpd_tasks.approvals import ApprovalStore, Status

    airflow = str(Path(sys.executable).with_name("airflow"))
    approved: list[str] = []
    store = ApprovalStore.from_url(audit_url)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [airflow, "dags", "test", DAG_ID],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    shown = 0
    deadline = time.monotonic() + RUN_LIMIT_SECONDS
    try:
        while process.poll() is None:
            shown = _show_new_lines(log, shown)
            for request in store.list_requests(status=Status.PENDING, pipeline=DAG_ID):
                print(
                    f"   approval request {request.id} from {request.requested_by}\n"
                    f"     scope {request.scope} (purpose {request.purpose}), "
                    f"{request.statement_kind}: {request.normalized}"
                )
                reason = "quarterly staging clean-up, ticket OPS-1234"
                if args.over_http and not wait_until_up(args.server, args.over_http, 90):
                    print("   the api-server did not come up; approving in the store instead")
                    args.over_http = None
                if args.over_http:
                    print(
                        f"   {args.user} logs in and approves it over HTTP: POST "
                        f"{args.over_http}/lgpd/api/approvals/{request.id}/approve"
                    )
                    approve_over_http(
                        args.over_http,
                        request.id,
                        reason,
                        username=args.user,
                        password=args.password,
                    )
                else:
                    print(
                        f"   {APPROVER} approves it directly in lgpd_tasks.approvals."
                        "ApprovalStore (the store behind the /lgpd approvals API)"
                    )
                    approve_in_store(audit_url, request.id, reason)
                approved.append(request.id)
            if time.monotonic() > deadline:
                print(f"   the DAG run took over {RUN_LIMIT_SECONDS}s; stopping it")
                _stop(process)
                break
            time.sleep(0.5)
        _show_new_lines(log, shown)
    finally:
        _stop(process)
    return process.returncode or 0, approved


def log_text(home: Path) -> str:
    return (home / "dags-test.log").read_text(errors="replace")


def _show_new_lines(log: Path, shown: int) -> int:
    lines = log.read_text(errors="replace").splitlines()
    for line in lines[shown:]:
        if SHOWN.search(line):
            print("   " + _tidy(line), flush=True)
    return len(lines)


def _tidy(line: str) -> str:
    """A log line without its timestamp, level and logger noise."""
    line = re.sub(r"^\S+Z \[\w+\s*\] ", "", line)
    line = re.sub(r" \[[\w.]+\]( \S+=\S+)*$", "", line)
    return re.sub(r"\s+loc=\S+", "", line).strip()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--approve-in-store", action="store_true", help="start no api-server")
    parser.add_argument("--over-http", metavar="URL", help="approve through your api-server")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="")
    parser.add_argument("--home", type=Path, help="work folder (default: a new one under .demo/)")
    args = parser.parse_args()
    args.server = None
    started = time.monotonic()

    home = args.home or ROOT / ".demo" / f"airflow-{datetime.now():%Y%m%d-%H%M%S}"
    home.mkdir(parents=True, exist_ok=True)
    audit_db, source = home / "audit.db", home / "source.db"
    audit_url = f"sqlite:///{audit_db}"
    env = demo_environment(home, audit_db, source)
    airflow = str(Path(sys.executable).with_name("airflow"))

    say(f"Airflow home {env['AIRFLOW_HOME']}: airflow db migrate (SQLite)")
    migrate = subprocess.run(
        [airflow, "db", "migrate"], env=env, capture_output=True, text=True, check=False
    )
    if migrate.returncode != 0:
        print(migrate.stdout[-3000:], migrate.stderr[-3000:])
        return 1

    if not args.approve_in_store and not args.over_http:
        say("airflow api-server on 127.0.0.1 with the LGPD pages (SimpleAuthManager)")
        args.server, args.over_http, args.user, args.password = start_api_server(env, home)
        print(f"   {args.over_http} (log: {home / 'api-server.log'}), approver {args.user}")

    say(f"Source database with {args.customers} synthetic customers (Faker pt_BR)")
    sys.path.insert(0, str(EXAMPLE))
    from setup_source import create_source

    create_source(source, args.customers)
    print(f"   {source}")

    say(f"airflow dags test {DAG_ID} (log: {home / 'dags-test.log'})")
    try:
        code, approved = run_dag(env, home / "dags-test.log", audit_url, args)
    finally:
        if args.server is not None:
            _stop(args.server)
    if code != 0 or not approved:
        print(f"   the DAG run failed (exit {code}); see {home / 'dags-test.log'}")

    from lgpd_tasks.cli import main as lgpd_tasks

    found = re.search(r"DagRun Finished: dag_id=\S+ .*?run_id=([^,\s]+)", log_text(home))
    scope = ["--pipeline", DAG_ID] + (["--run", found.group(1)] if found else [])
    say(f"lgpd-tasks audit tail --db {audit_url} {' '.join(scope)}")
    lgpd_tasks(["audit", "tail", "--db", audit_url, *scope, "-n", "30"])

    say(f"lgpd-tasks audit verify --db {audit_url}")
    verified = lgpd_tasks(["audit", "verify", "--db", audit_url])

    reports = sorted(Path(env["LGPD_REPORT_BUCKET"]).rglob("*.csv"))
    if reports:
        say(f"Masked report in the reporting bucket: {reports[-1]}")
        for line in reports[-1].read_text().splitlines()[:12]:
            print("   " + line)
    print(f"\nDone in {time.monotonic() - started:.0f}s; everything is under {home}")
    return 0 if code == 0 and approved and verified == 0 and reports else 1


if __name__ == "__main__":
    sys.exit(main())
