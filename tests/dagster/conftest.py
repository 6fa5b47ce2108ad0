"""Fixtures for the Dagster tests: the example's Definitions on tmp_path, one Dagster instance."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dagster"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from lgpd_contractor.definitions import build_defs  # noqa: E402
from lgpd_contractor.source import create_source  # noqa: E402

MASKING_KEY = "test-masking-key-0123456789abcdef"


@dataclass
class Contractor:
    """The example's Definitions wired to files under one tmp folder."""

    root: Path
    source: Path
    audit_url: str
    storage: Path
    reports: Path
    defs: dg.Definitions
    instance: dg.DagsterInstance

    @property
    def lgpd(self) -> dg.ConfigurableResource:
        return self.defs.resources["lgpd"]  # type: ignore[index,no-any-return]

    def run(self, job: str, **kwargs: object) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, raise_on_error=False, **kwargs
        )


@pytest.fixture
def masking_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LGPD_MASKING_KEY", MASKING_KEY)
    return MASKING_KEY


@pytest.fixture
def dagster_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@pytest.fixture
def contractor(
    tmp_path: Path, masking_key: str, dagster_instance: dg.DagsterInstance
) -> Contractor:
    source = create_source(tmp_path / "contractor.db")
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    storage = tmp_path / "storage"
    reports = tmp_path / "reporting"
    defs = build_defs(
        database_url=f"sqlite:///{source}",
        audit_url=audit_url,
        storage_dir=str(storage),
        report_folder=str(reports),
    )
    return Contractor(tmp_path, source, audit_url, storage, reports, defs, dagster_instance)
