"""Fixtures the core's tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from lgpd_tasks.audit import AuditStore


@pytest.fixture
def audit(tmp_path: Path) -> AuditStore:
    """An audit store in the test's own folder."""
    return AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db")


@pytest.fixture
def masking_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A masking key in the environment, for files that ask for it with ``usefixtures``."""
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret-0123")
