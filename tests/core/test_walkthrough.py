"""The core walkthrough (`make demo-core`) runs end to end and prints no personal value."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

WALKTHROUGH = Path(__file__).parents[2] / "examples" / "core" / "walkthrough.py"


def test_core_walkthrough_runs_and_leaks_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "LGPD_DEMO_DIR": str(tmp_path / "demo")}
    done = subprocess.run(
        [sys.executable, str(WALKTHROUGH)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "audit chain OK" in done.stdout
    source = sqlite3.connect(tmp_path / "demo" / "source.db")
    people = source.execute("SELECT nome, cpf, email, telefone FROM customers").fetchall()
    for person in people:
        for value in person:
            assert value not in done.stdout
    # the store runs in WAL mode: its -wal file holds the newest pages
    audit_bytes = b"".join(p.read_bytes() for p in (tmp_path / "demo").glob("audit.db*"))
    assert not any(cpf.encode() in audit_bytes for _, cpf, _, _ in people)
