"""The 22 TPC-H queries parse, read exactly their tables, and every column resolves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lgpd_tasks.policy import Policy
from lgpd_tasks.sql import StaticCatalog, analyze, check

TPCH = Path(__file__).parent.parent / "fixtures" / "tpch"
EXPECTED: dict[str, Any] = yaml.safe_load((TPCH / "expected.yaml").read_text())
QUERIES = sorted(p.stem for p in TPCH.glob("q*.sql"))
CATALOG = StaticCatalog({f"public.{t}": tuple(c) for t, c in EXPECTED["catalog"].items()})


def _sql(name: str) -> str:
    return (TPCH / f"{name}.sql").read_text()


def test_all_22_queries_are_present() -> None:
    assert [f"q{i:02d}" for i in range(1, 23)] == QUERIES


@pytest.mark.parametrize("name", QUERIES)
def test_tpch_query_reads_exactly_its_tables(name: str) -> None:
    [statement] = analyze(_sql(name), "postgres")
    assert statement.kind == "select"
    assert statement.tables_read == {f"public.{t}" for t in EXPECTED["tables"][name]}
    assert statement.tables_written == frozenset()


@pytest.mark.parametrize("name", QUERIES)
def test_tpch_query_columns_resolve_with_the_catalogue(name: str) -> None:
    [statement] = analyze(_sql(name), "postgres", catalog=CATALOG)
    assert statement.unresolved_columns == frozenset()
    for table, columns in statement.columns_read.items():
        assert columns <= set(CATALOG.tables[table]), table


@pytest.mark.parametrize("name", QUERIES)
def test_tpch_query_is_allowed_for_a_scope_granting_the_schema(name: str) -> None:
    policy = Policy.from_dict(
        {
            "version": 1,
            "purposes": {"bench": {"legal_basis": "research", "retention": "30d"}},
            "scopes": {"tpch": {"purpose": "bench", "read": {t: "*" for t in EXPECTED["catalog"]}}},
        }
    )
    decision = check(_sql(name), policy.scope("tpch"), catalog=CATALOG)
    assert decision.action == "allow", decision.summary()


def test_tpch_q01_columns_read() -> None:
    [statement] = analyze(_sql("q01"), "postgres", catalog=CATALOG)
    assert statement.columns_read["public.lineitem"] == {
        "l_returnflag",
        "l_linestatus",
        "l_quantity",
        "l_extendedprice",
        "l_discount",
        "l_tax",
        "l_shipdate",
    }
