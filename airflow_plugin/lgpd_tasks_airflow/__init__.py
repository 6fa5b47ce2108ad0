"""Airflow integration for lgpd-tasks: guarded SQL operators, approval gates, masking XCom.

Names load on first use, so ``import lgpd_tasks_airflow`` is cheap and says which extra to
install when Airflow is missing:

>>> import lgpd_tasks_airflow
>>> sorted(lgpd_tasks_airflow.__all__)
['LgpdApprovalSensor', 'LgpdMaskingXComBackend', 'LgpdSqlOperator', 'gated_sql']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lgpd_tasks_airflow.operators import LgpdSqlOperator
    from lgpd_tasks_airflow.sensors import LgpdApprovalSensor, gated_sql
    from lgpd_tasks_airflow.xcom import LgpdMaskingXComBackend

__all__ = ["LgpdApprovalSensor", "LgpdMaskingXComBackend", "LgpdSqlOperator", "gated_sql"]

_WHERE = {
    "LgpdSqlOperator": "lgpd_tasks_airflow.operators",
    "LgpdApprovalSensor": "lgpd_tasks_airflow.sensors",
    "gated_sql": "lgpd_tasks_airflow.sensors",
    "LgpdMaskingXComBackend": "lgpd_tasks_airflow.xcom",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] == "airflow":
            raise ImportError(
                f"lgpd_tasks_airflow.{name} needs Apache Airflow and the common-sql provider: "
                "pip install 'lgpd-tasks[airflow]'"
            ) from err
        raise
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
