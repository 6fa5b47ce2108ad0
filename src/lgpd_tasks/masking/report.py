"""What a masking run did, per column: type, strategy, cells masked, confidence; never a value."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class ColumnReport:
    """One masked column. ``detected_by`` is ``policy``, ``name`` or ``content``."""

    column: str
    detected_type: str
    strategy: str
    cells_masked: int
    confidence: float
    detected_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "detected_type": self.detected_type,
            "strategy": self.strategy,
            "cells_masked": self.cells_masked,
            "confidence": self.confidence,
            "detected_by": self.detected_by,
        }


@dataclass(frozen=True)
class MaskingReport:
    """The columns a run masked, in input order, and how many rows it saw.

    >>> report = MaskingReport(rows=2, columns=(
    ...     ColumnReport("cpf", "cpf", "hmac", 2, 1.0, "name"),))
    >>> report.masked_columns, report.to_dict()["columns"][0]["cells_masked"]
    (('cpf',), 2)
    """

    rows: int = 0
    columns: tuple[ColumnReport, ...] = ()

    @property
    def masked_columns(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns)

    @property
    def cells_masked(self) -> int:
        return sum(c.cells_masked for c in self.columns)

    def column(self, name: str) -> ColumnReport | None:
        return next((c for c in self.columns if c.column == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "cells_masked": self.cells_masked,
            "columns": [c.to_dict() for c in self.columns],
        }

    def merge(self, other: MaskingReport) -> MaskingReport:
        """This report and a later chunk's, with rows and masked cells added up."""
        merged = {c.column: c for c in self.columns}
        for col in other.columns:
            mine = merged.get(col.column)
            merged[col.column] = (
                col
                if mine is None
                else replace(mine, cells_masked=mine.cells_masked + col.cells_masked)
            )
        return MaskingReport(rows=self.rows + other.rows, columns=tuple(merged.values()))

    @classmethod
    def combine(cls, reports: Iterable[MaskingReport]) -> MaskingReport:
        total = cls()
        for report in reports:
            total = total.merge(report)
        return total
