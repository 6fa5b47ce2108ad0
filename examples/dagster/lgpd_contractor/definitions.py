"""Assets and Definitions of the contractor pipeline: extract, enrich, load, report, gated purge."""

# No ``from __future__ import annotations``: Dagster reads the asset annotations at runtime.

import os
from pathlib import Path

import dagster as dg
import pandas as pd
from lgpd_tasks_dagster import GuardedDatabaseResource, build_lgpd_definitions
from pydantic import Field

from lgpd_contractor.source import create_source

HERE = Path(__file__).resolve().parent.parent


class ReportStorage(dg.ConfigurableResource):  # type: ignore[misc]
    """Where the masked report goes: a local folder, or an S3 bucket when one is set."""

    folder: str = Field(default="reporting", description="Local reporting folder.")
    s3_bucket: str = Field(default="", description="S3 bucket; empty writes to the folder.")
    s3_endpoint_url: str = Field(default="", description="S3 endpoint (MinIO, moto...).")

    def write(self, name: str, data: bytes) -> str:
        if self.s3_bucket:
            import boto3

            client = boto3.client("s3", endpoint_url=self.s3_endpoint_url or None)
            client.put_object(Bucket=self.s3_bucket, Key=f"reports/{name}", Body=data)
            return f"s3://{self.s3_bucket}/reports/{name}"
        target = Path(self.folder) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return str(target.resolve())


class SourceConfig(dg.Config):  # type: ignore[misc]
    seed_if_missing: str = Field(
        default="", description="Create the synthetic SQLite source at this path if missing."
    )


@dg.asset(group_name="contractor", kinds={"sqlite"})
def contractor_payments(
    context: dg.AssetExecutionContext, config: SourceConfig, lgpd: GuardedDatabaseResource
) -> pd.DataFrame:
    """Contractors and their payments, read under the ``contractor.extract`` scope (masked)."""
    if config.seed_if_missing and not Path(config.seed_if_missing).exists():
        create_source(Path(config.seed_if_missing))
    return lgpd.query_df(
        "SELECT c.id, c.nome, c.cpf, c.email, c.cidade, p.amount, p.paid_at "
        "FROM contractors c JOIN payments p ON p.contractor_id = c.id",
        scope="contractor.extract",
    )


@dg.asset(group_name="contractor")
def enriched_payments(contractor_payments: pd.DataFrame) -> pd.DataFrame:
    """Masked payments with a payment band and the year (no raw personal value arrives here)."""
    df = contractor_payments.copy()
    df["band"] = pd.cut(df["amount"], [0, 2000, 5000, 1e9], labels=["low", "mid", "high"]).astype(
        str
    )
    df["year"] = df["paid_at"].str.slice(0, 4)
    return df


@dg.asset(group_name="contractor")
def payment_summary(
    context: dg.AssetExecutionContext,
    enriched_payments: pd.DataFrame,
    lgpd: GuardedDatabaseResource,
) -> pd.DataFrame:
    """Contractors and total paid per city, loaded under the ``contractor.load`` scope."""
    summary = (
        enriched_payments.groupby("cidade")
        .agg(contractors=("cpf", "nunique"), total=("amount", "sum"))
        .reset_index()
    )
    run_id = context.run.run_id
    lgpd.executemany(
        "INSERT INTO payment_summary (run_id, cidade, contractors, total) VALUES (?, ?, ?, ?)",
        [(run_id, r.cidade, int(r.contractors), float(r.total)) for r in summary.itertuples()],
        scope="contractor.load",
    )
    return summary


@dg.asset(group_name="contractor")
def contractor_report(
    context: dg.AssetExecutionContext, enriched_payments: pd.DataFrame, reports: ReportStorage
) -> dg.MaterializeResult:
    """The masked report for the finance team, written to the reporting folder or bucket."""
    csv = enriched_payments.to_csv(index=False).encode()
    where = reports.write(f"contractor_report_{context.run.run_id}.csv", csv)
    return dg.MaterializeResult(metadata={"location": where, "rows": len(enriched_payments)})


@dg.asset(group_name="contractor_purge")
def purged_old_payments(lgpd: GuardedDatabaseResource) -> dg.MaterializeResult:
    """Deletes payments older than 2023; a DELETE in ``contractor.purge`` needs approval."""
    deleted = lgpd.execute(
        "DELETE FROM payments WHERE paid_at < '2023-01-01'", scope="contractor.purge"
    )
    return dg.MaterializeResult(metadata={"deleted": deleted})


contractor_pipeline = dg.define_asset_job(
    "contractor_pipeline",
    selection=["contractor_payments", "enriched_payments", "payment_summary", "contractor_report"],
)
contractor_purge = dg.define_asset_job("contractor_purge", selection=["purged_old_payments"])


def build_defs(
    *,
    policy_file: str | None = None,
    database_url: str | dg.EnvVar | None = None,
    audit_url: str | dg.EnvVar | None = None,
    storage_dir: str | None = None,
    report_folder: str = "reporting",
    sensor_interval_seconds: int = 30,
) -> dg.Definitions:
    """The example's Definitions; tests pass their own paths, ``dagster dev`` reads the env."""
    lgpd = GuardedDatabaseResource(
        policy_file=policy_file or str(HERE / "policy.yaml"),
        database_url=database_url or dg.EnvVar("CONTRACTOR_DB_URL"),
        audit_url=audit_url or dg.EnvVar("LGPD_AUDIT_URL"),
        masking_key=dg.EnvVar("LGPD_MASKING_KEY"),
        approvers=["maria.souza", "joao.lima"],
        table_asset_keys={
            "main.contractors": "source/contractors",
            "main.payments": "source/payments",
        },
    )
    return build_lgpd_definitions(
        dg.Definitions(
            assets=[
                contractor_payments,
                enriched_payments,
                payment_summary,
                contractor_report,
                purged_old_payments,
            ],
            jobs=[contractor_pipeline, contractor_purge],
            resources={"reports": ReportStorage(folder=report_folder)},
        ),
        lgpd=lgpd,
        io_manager=dg.FilesystemIOManager(base_dir=storage_dir) if storage_dir else None,
        sensor_interval_seconds=sensor_interval_seconds,
    )


defs = build_defs(
    sensor_interval_seconds=int(os.environ.get("LGPD_SENSOR_INTERVAL", "30")),
)
