"""End to end under `dagster dev`: a gated run, the approval from the Launchpad job, the relaunch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lgpd_tasks.approvals import ApprovalStore, Status
from lgpd_tasks.audit import AuditStore

from .conftest import EXAMPLE, MASKING_KEY

pytestmark = pytest.mark.slow

REPO = {"repositoryLocationName": "lgpd_contractor", "repositoryName": "__repository__"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    assert "errors" not in data, data
    return data["data"]


def _launch(port: int, job: str, run_config: dict[str, Any], tags: dict[str, str]) -> str:
    data = _graphql(
        port,
        """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
             __typename ... on LaunchRunSuccess { run { runId } }
             ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } }
           } }""",
        {
            "p": {
                "selector": {**REPO, "jobName": job},
                "runConfigData": run_config,
                "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
            }
        },
    )
    launched = data["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return str(launched["run"]["runId"])


def _wait_run(port: int, run_id: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = _graphql(
            port,
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
            {"id": run_id},
        )
        status = str(data["runOrError"]["status"])
        if status in {"SUCCESS", "FAILURE", "CANCELED"}:
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def _runs_tagged(port: int, key: str, value: str) -> list[dict[str, Any]]:
    data = _graphql(
        port,
        """query($t: [ExecutionTag!]) { runsOrError(filter: {tags: $t}) {
             ... on Runs { results { runId status jobName } } } }""",
        {"t": [{"key": key, "value": value}]},
    )
    return list(data["runsOrError"]["results"])


@pytest.fixture
def dagster_dev(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    sys.path.insert(0, str(EXAMPLE))
    from lgpd_contractor.source import create_source

    source = create_source(tmp_path / "contractor.db")
    home = tmp_path / "dagster_home"
    home.mkdir()
    port = _free_port()
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        DAGSTER_DISABLE_TELEMETRY="yes",
        CONTRACTOR_DB_URL=f"sqlite:///{source}",
        LGPD_AUDIT_URL=f"sqlite:///{tmp_path / 'audit.db'}",
        LGPD_MASKING_KEY=MASKING_KEY,
        LGPD_SENSOR_INTERVAL="5",
        PYTHONPATH=os.pathsep.join([str(EXAMPLE), *sys.path]),
    )
    log = (tmp_path / "dagster_dev.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-m",
            "lgpd_contractor",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=EXAMPLE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # an idle machine starts it in seconds; a loaded 2-core one can take minutes
        deadline = time.monotonic() + 300
        while True:
            try:
                _graphql(port, "{ version }")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        (tmp_path / "dagster_dev.log").read_text()[-3000:]
                    ) from None
                time.sleep(1)
        yield port, tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_approve_from_the_launchpad_and_the_sensor_relaunches(
    dagster_dev: tuple[int, Path],
) -> None:
    port, root = dagster_dev

    details = _graphql(
        port,
        """query($s: ResourceSelector!) { topLevelResourceDetailsOrError(resourceSelector: $s) {
             ... on ResourceDetails { configuredValues { key value type } } } }""",
        {"s": {**REPO, "resourceName": "lgpd"}},
    )
    shown = json.dumps(details)
    assert MASKING_KEY not in shown
    values = {v["key"]: v for v in details["topLevelResourceDetailsOrError"]["configuredValues"]}
    assert values["database_url"]["type"] == "ENV_VAR"
    assert values["masking_key"]["type"] == "ENV_VAR"

    gated = _launch(port, "contractor_purge", {}, {"lgpd/user": "ana.costa"})
    assert _wait_run(port, gated) == "FAILURE"
    store = ApprovalStore(AuditStore.from_url(f"sqlite:///{root / 'audit.db'}"))
    pending = store.list_requests(status=Status.PENDING)
    assert [r.run_id for r in pending] == [gated]
    request_id = pending[0].id

    approve = _launch(
        port,
        "lgpd_approve",
        {
            "ops": {
                "lgpd_decide": {
                    "config": {
                        "request_id": request_id,
                        "decision": "approve",
                        "reason": "yearly purge",
                        "approver_token": "maria.souza",
                    }
                }
            }
        },
        {},
    )
    assert _wait_run(port, approve) == "SUCCESS"

    deadline = time.monotonic() + 90
    relaunched: list[dict[str, Any]] = []
    while not relaunched and time.monotonic() < deadline:
        relaunched = _runs_tagged(port, "lgpd/approval_request", request_id)
        time.sleep(2)
    assert len(relaunched) == 1, "the sensor did not relaunch the gated job"
    assert relaunched[0]["jobName"] == "contractor_purge"
    assert _wait_run(port, relaunched[0]["runId"]) == "SUCCESS"
    assert store.get(request_id).consumed_at is not None
