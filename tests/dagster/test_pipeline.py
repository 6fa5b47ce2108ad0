"""The contractor pipeline in-process: guarded extract, masked storage, lineage, refusals."""

# No ``from __future__ import annotations``: the assets below are read by Dagster at runtime.

import pickle
import sqlite3
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from lgpd_tasks_dagster import (
    GuardedDatabaseResource,
    MaskingFailure,
    MaskingIOManager,
    StatementBlockedFailure,
)

from lgpd_tasks.audit import AuditStore, EntryFilter

from .conftest import Contractor


def _raw_values(source: Path) -> tuple[list[str], list[str]]:
    with sqlite3.connect(source) as conn:
        rows = conn.execute("SELECT cpf, email FROM contractors").fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


def _stored_bytes(storage: Path) -> bytes:
    files = [p for p in storage.rglob("*") if p.is_file()]
    assert files, f"nothing stored under {storage}"
    return b"".join(p.read_bytes() for p in files)


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dg.MetadataValue]:
    mats = result.asset_materializations_for_node(asset)
    assert mats, f"{asset} was not materialized"
    return dict(mats[-1].metadata)


def test_pipeline_stores_no_raw_cpf_or_email(contractor: Contractor) -> None:
    result = contractor.run("contractor_pipeline")
    assert result.success

    stored = _stored_bytes(contractor.storage)
    cpfs, emails = _raw_values(contractor.source)
    assert not [c for c in cpfs if c.encode() in stored]
    assert not [e for e in emails if e.encode() in stored]
    report = next(contractor.reports.glob("*.csv")).read_text()
    assert not [c for c in cpfs if c in report]
    assert not [e for e in emails if e in report]

    df = pickle.loads((contractor.storage / "contractor_payments").read_bytes())
    assert df["cpf"].str.startswith("hmac:cpf:").all()
    assert set(df["nome"]) == {"[NAME]"}


def test_masked_cpf_is_stable_across_assets(contractor: Contractor) -> None:
    assert contractor.run("contractor_pipeline").success
    extract = pickle.loads((contractor.storage / "contractor_payments").read_bytes())
    enriched = pickle.loads((contractor.storage / "enriched_payments").read_bytes())
    # masking again downstream must not re-hash the key, or masked keys stop joining
    assert set(enriched["cpf"]) == set(extract["cpf"])


def test_extract_has_column_lineage_and_schema(contractor: Contractor) -> None:
    result = contractor.run("contractor_pipeline")
    metadata = _metadata(result, "contractor_payments")
    lineage = metadata["dagster/column_lineage"].value
    assert isinstance(lineage, dg.TableColumnLineage)
    deps = lineage.deps_by_column
    assert deps["cpf"] == [dg.TableColumnDep(dg.AssetKey(["source", "contractors"]), "cpf")]
    assert deps["amount"] == [dg.TableColumnDep(dg.AssetKey(["source", "payments"]), "amount")]
    schema = metadata["dagster/column_schema"].value
    assert isinstance(schema, dg.TableSchema)
    assert [c.name for c in schema.columns] == [
        "id",
        "nome",
        "cpf",
        "email",
        "cidade",
        "amount",
        "paid_at",
    ]


def test_io_manager_reports_masking_and_audits_it(contractor: Contractor) -> None:
    result = contractor.run("contractor_pipeline")
    metadata = _metadata(result, "contractor_payments")
    assert set(metadata["lgpd/masked_columns"].value) >= {"nome", "cpf", "email"}
    assert metadata["lgpd/strategies"].value["cpf"] == "hmac"

    store = AuditStore.from_url(contractor.audit_url)
    masking = store.entries(EntryFilter(kind="masking", run_id=result.run_id))
    destinations = {e.details["destination"] for e in masking}
    assert "io_manager:contractor_payments" in destinations
    assert all(e.details["lineage"][0]["target"] == e.details["destination"] for e in masking)
    assert store.verify().ok


def test_statements_are_audited_with_the_asset_identity(contractor: Contractor) -> None:
    result = contractor.run("contractor_pipeline")
    store = AuditStore.from_url(contractor.audit_url)
    statements = store.entries(EntryFilter(kind="statement", run_id=result.run_id))
    by_task = {e.task: e for e in statements}
    extract = by_task["contractor_payments"]
    assert extract.orchestrator == "dagster"
    assert extract.pipeline == "contractor_pipeline"
    assert extract.principal == "dagster:contractor_pipeline.contractor_payments"
    assert extract.attempt == 1
    assert extract.details["identity"]["step_key"] == "contractor_payments"
    assert by_task["payment_summary"].scope == "contractor.load"


def test_statement_outside_the_scope_fails_with_metadata(contractor: Contractor) -> None:
    @dg.asset
    def salaries(lgpd: GuardedDatabaseResource) -> pd.DataFrame:
        return lgpd.query_df("SELECT nome, salario FROM folha", scope="contractor.extract")

    result = dg.materialize(
        [salaries],
        resources={"lgpd": contractor.lgpd},
        instance=contractor.instance,
        raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node("salaries")
    assert failure is not None
    assert failure.user_failure_data is not None
    meta = failure.user_failure_data.metadata
    assert meta["rule"].value == "read_scope"
    assert meta["scope"].value == "contractor.extract"
    assert meta["table"].value == "main.folha"
    assert "StatementBlocked" in str(failure.error) or "ScopeViolation" in meta["error"].value


def test_blocked_statement_raises_statement_blocked_failure(contractor: Contractor) -> None:
    @dg.asset
    def dropper(lgpd: GuardedDatabaseResource) -> None:
        lgpd.execute("DROP TABLE payments", scope="contractor.purge")

    with pytest.raises(StatementBlockedFailure) as caught:
        dg.materialize([dropper], resources={"lgpd": contractor.lgpd}, instance=contractor.instance)
    assert caught.value.allow_retries is False
    with sqlite3.connect(contractor.source) as conn:
        assert conn.execute("SELECT count(*) FROM payments").fetchone()[0] > 0


def test_io_manager_masks_raw_frames_from_any_asset(contractor: Contractor, tmp_path: Path) -> None:
    from faker import Faker

    fake = Faker("pt_BR")
    raw = pd.DataFrame(
        {
            "cliente": [fake.name() for _ in range(20)],
            "documento": [fake.cpf() for _ in range(20)],
            "contato": [fake.email() for _ in range(20)],
            "nota": [f"ligar para {fake.cpf()}" for _ in range(20)],
        }
    )

    @dg.asset
    def raw_people() -> pd.DataFrame:
        return raw

    store = tmp_path / "raw_store"
    io = MaskingIOManager(lgpd=contractor.lgpd, inner=dg.FilesystemIOManager(base_dir=str(store)))
    result = dg.materialize(
        [raw_people], resources={"io_manager": io}, instance=contractor.instance
    )
    assert result.success
    data = (store / "raw_people").read_bytes()
    for value in [*raw["documento"], *raw["contato"]]:
        assert value.encode() not in data
    assert "ligar para" in pickle.loads(data)["nota"].iloc[0]


def test_io_manager_refuses_objects_it_cannot_mask(contractor: Contractor, tmp_path: Path) -> None:
    @dg.asset
    def opaque() -> object:
        return _Opaque()

    store = tmp_path / "opaque_store"
    io = MaskingIOManager(lgpd=contractor.lgpd, inner=dg.FilesystemIOManager(base_dir=str(store)))
    with pytest.raises(MaskingFailure, match="cannot mask"):
        dg.materialize([opaque], resources={"io_manager": io}, instance=contractor.instance)
    assert not (store / "opaque").exists()


class _Opaque:
    """An object the IO manager does not know how to mask."""
