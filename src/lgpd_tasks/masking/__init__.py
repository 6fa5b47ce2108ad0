"""Masking of personal data in DataFrames, DB-API rows, files and free text.

>>> from lgpd_tasks.masking import Masker
>>> Masker().mask_text("CPF 529.982.247-25")
'CPF [CPF]'
"""

from __future__ import annotations

from lgpd_tasks.masking.detect import PiiType, type_from_name, value_type
from lgpd_tasks.masking.engine import (
    DEFAULT_STRATEGIES,
    ColumnPlan,
    Masker,
    MaskingRules,
    mask_dataframe,
    mask_text,
)
from lgpd_tasks.masking.report import ColumnReport, MaskingReport
from lgpd_tasks.masking.strategies import (
    STRATEGIES,
    Drop,
    Generalize,
    Hmac,
    Null,
    Partial,
    Redact,
    Strategy,
    strategy_from_spec,
)

__all__ = [
    "DEFAULT_STRATEGIES",
    "STRATEGIES",
    "ColumnPlan",
    "ColumnReport",
    "Drop",
    "Generalize",
    "Hmac",
    "Masker",
    "MaskingReport",
    "MaskingRules",
    "Null",
    "Partial",
    "PiiType",
    "Redact",
    "Strategy",
    "mask_dataframe",
    "mask_text",
    "strategy_from_spec",
    "type_from_name",
    "value_type",
]
