"""`make demo` end to end: a real api-server, a scripted approver over HTTP, the DAG goes on."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).parents[2] / "examples" / "airflow" / "run_demo.py"


@pytest.mark.slow
def test_demo_approves_over_http_and_the_dag_finishes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    done = subprocess.run(
        [sys.executable, str(DEMO), "--home", str(tmp_path / "demo"), "--customers", "120"],
        capture_output=True,
        text=True,
        env=env,
        timeout=540,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert re.search(
        r"approves it over HTTP: POST http://127\.0\.0\.1:\d+/lgpd/api/approvals/apr_", out
    )
    assert re.search(r"DagRun Finished: dag_id=contractor_pipeline,.*state=success", out)
    assert "audit chain OK" in out
    people = (
        sqlite3.connect(tmp_path / "demo" / "source.db")
        .execute("SELECT cpf, email FROM customers")
        .fetchall()
    )
    for cpf, email in people:
        assert cpf not in out
        assert email not in out
