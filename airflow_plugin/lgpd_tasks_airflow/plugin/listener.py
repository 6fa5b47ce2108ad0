"""Keeps task return values out of task logs, where masking cannot reach them.

Airflow's Python tasks (and ``SQLExecuteQueryOperator``) log ``Done. Returned value was:
<value>`` before the value reaches XCom, so a DataFrame of customers returned by a plain
``@task`` would be printed raw in the task log even though the masking XCom backend stores it
masked. With the plugin installed, such operators log ``Returned value not shown`` instead;
``[lgpd] log_return_values = True`` keeps Airflow's own behaviour. lgpd-tasks' operators are
left alone: they log only the shape of a result.
"""

from __future__ import annotations

from typing import Any

from airflow.listeners import hookimpl
from airflow.sdk import conf

# Every Airflow process loads plugins: this module imports nothing of lgpd-tasks' core.
SECTION = "lgpd"

#: The operators whose logging is already value-free.
_OWN_PACKAGE = "lgpd_tasks_airflow"


def log_return_values() -> bool:
    """``[lgpd] log_return_values`` (``AIRFLOW__LGPD__LOG_RETURN_VALUES``), false by default."""
    return conf.getboolean(SECTION, "log_return_values", fallback=False)


def hide_return_value(task: Any) -> bool:
    """Turn ``show_return_value_in_logs`` off on ``task``; ``True`` if it was on."""
    if not getattr(task, "show_return_value_in_logs", False):
        return False
    if type(task).__module__.startswith(_OWN_PACKAGE):
        return False
    task.show_return_value_in_logs = False
    return True


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    """Before the task runs: its return value will not be logged (see the module's text)."""
    task = getattr(task_instance, "task", None)
    if task is not None and not log_return_values():
        hide_return_value(task)
