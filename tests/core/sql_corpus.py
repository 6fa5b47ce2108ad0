"""Loads the SQL corpus (tests/fixtures/sql/*.yaml): policy, catalogue and decided cases."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from lgpd_tasks.policy import Policy, load_policy
from lgpd_tasks.sql import StaticCatalog

CORPUS = Path(__file__).parent.parent / "fixtures" / "sql"


@dataclass(frozen=True)
class Case:
    file: str
    title: str
    scope: str
    sql: str
    action: str
    rule: str | None
    use_catalog: bool
    policy_file: str
    #: The refusing reason names this table / column (checked when given).
    table: str | None = None
    column: str | None = None

    @property
    def id(self) -> str:
        return f"{self.file}: {self.title}"


@cache
def policy(name: str) -> Policy:
    return load_policy(CORPUS / name)


@cache
def catalog() -> StaticCatalog:
    tables: dict[str, Any] = yaml.safe_load((CORPUS / "catalog.yaml").read_text())
    return StaticCatalog({t: tuple(cols) for t, cols in tables.items()})


def cases() -> list[Case]:
    found: list[Case] = []
    for path in sorted(CORPUS.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        if not isinstance(document, dict) or "cases" not in document:
            continue
        for raw in document["cases"]:
            found.append(
                Case(
                    file=path.stem,
                    title=raw["title"],
                    scope=raw["scope"],
                    sql=raw["sql"],
                    action=raw["action"],
                    rule=raw.get("rule"),
                    use_catalog=raw.get("catalog", True),
                    policy_file=document["policy"],
                    table=raw.get("table"),
                    column=raw.get("column"),
                )
            )
    return found
