"""Column lineage and column schema metadata for the Dagster UI, from the guard's analysis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg
import pandas as pd

from lgpd_tasks.sql import Decision

COLUMN_LINEAGE = "dagster/column_lineage"
COLUMN_SCHEMA = "dagster/column_schema"


def table_asset_key(table: str, overrides: Mapping[str, str]) -> dg.AssetKey:
    """The asset key of a source table: ``overrides`` first, else the dotted name as a path.

    >>> table_asset_key("crm.customers", {}).to_user_string()
    'crm/customers'
    >>> table_asset_key("main.contractors", {"main.contractors": "raw/contractors"}).path
    ['raw', 'contractors']
    """
    key = overrides.get(table)
    if key is not None:
        return dg.AssetKey.from_user_string(key)
    return dg.AssetKey(table.split("."))


def lineage_deps(
    decisions: Iterable[Decision], overrides: Mapping[str, str]
) -> dict[str, list[dg.TableColumnDep]]:
    """Output or written column -> the source columns it is computed from."""
    deps: dict[str, dict[tuple[str, str], dg.TableColumnDep]] = {}
    for decision in decisions:
        for statement in decision.statements:
            for edge in statement.lineage:
                target = edge.target.rsplit(".", 1)[-1]
                bucket = deps.setdefault(target, {})
                for source in edge.sources:
                    table, _, column = source.rpartition(".")
                    if not table:
                        continue
                    bucket[(table, column)] = dg.TableColumnDep(
                        asset_key=table_asset_key(table, overrides), column_name=column
                    )
    return {column: list(sources.values()) for column, sources in deps.items()}


def lineage_metadata(
    decisions: Iterable[Decision], overrides: Mapping[str, str]
) -> dict[str, dg.MetadataValue]:
    deps = lineage_deps(decisions, overrides)
    if not deps:
        return {}
    return {COLUMN_LINEAGE: dg.MetadataValue.column_lineage(dg.TableColumnLineage(deps))}


def schema_from_columns(columns: Iterable[str]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=c, type="unknown") for c in columns])


def schema_from_frame(df: pd.DataFrame) -> dg.TableSchema:
    """The column names and pandas dtypes of a (masked) DataFrame."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in df.dtypes.items()]
    )
