"""Fixtures for the evidence tests: moto's S3 server on loopback, a masking key, an audit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lgpd_tasks.audit import AuditStore, NewEntry
from lgpd_tasks.identity import TaskIdentity


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 in server mode on 127.0.0.1: real HTTP through boto3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)


@pytest.fixture
def s3(s3_endpoint: str, aws_env: None) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def masking_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "evidence-tests-key-0123456789abcdef"
    monkeypatch.setenv("LGPD_MASKING_KEY", key)
    return key


@pytest.fixture
def audit_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/audit.db"


def fill(store: AuditStore, count: int, *, task: str = "extract") -> None:
    """Append ``count`` plain records (no personal data) to the chain."""
    who = TaskIdentity("airflow", "contractor", task, run_id="manual__1")
    store.append_many([NewEntry(kind="note", identity=who, details={"n": i}) for i in range(count)])
