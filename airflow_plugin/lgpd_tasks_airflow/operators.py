"""LgpdSqlOperator: common-sql's SQLExecuteQueryOperator with a scoped, guarded, audited connection."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.common.sql.hooks.handlers import return_single_query_results
from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import get_current_context

from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker
from lgpd_tasks.policy import Policy
from lgpd_tasks_airflow.hooks import GuardedHookMixin, GuardSettings, guard_hook
from lgpd_tasks_airflow.runtime import (
    LgpdConfigurationError,
    audit_store,
    load_task_policy,
    task_identity,
    translate_errors,
)


def literal_values(sql: str | Sequence[str], parameters: Any = None) -> set[str]:
    """String literals of ``sql`` and string ``parameters``: what a rendered field must not show.

    >>> sorted(literal_values("SELECT id FROM t WHERE cpf = '529.982.247-25' AND n > 3", ["x@y.com"]))
    ['529.982.247-25', 'x@y.com']
    """
    import sqlglot
    from sqlglot import exp

    found: set[str] = set()
    for text in [sql] if isinstance(sql, str) else list(sql):
        try:
            trees = sqlglot.parse(text)
        except sqlglot.errors.SqlglotError:
            continue  # the guard blocks what it cannot parse; nothing will run
        for tree in trees:
            if tree is not None:
                found.update(lit.this for lit in tree.find_all(exp.Literal) if lit.is_string)
    values = parameters.values() if isinstance(parameters, Mapping) else parameters or ()
    if not isinstance(values, str):
        found.update(v for v in values if isinstance(v, str))
    return {v for v in found if v.strip()}


def hide_literals(sql: str | Sequence[str], parameters: Any = None) -> None:
    """Register the SQL's literal values with Airflow's secrets masker (logs, rendered fields)."""
    from airflow.sdk.log import mask_secret

    for value in literal_values(sql, parameters):
        mask_secret(value)


class LgpdSqlOperator(SQLExecuteQueryOperator):
    """Run SQL like ``SQLExecuteQueryOperator``, inside an lgpd-tasks scope.

    Takes every argument of ``SQLExecuteQueryOperator`` (``conn_id``, templated ``sql``
    including ``.sql`` files, ``parameters``, ``handler``, ``split_statements``,
    ``return_last``, ``autocommit``, ``hook_params``, ``show_return_value_in_logs``...) and:

    :param scope: the policy scope the task runs in (templated).
    :param policy: the policy file; default ``[lgpd] policy_file`` or ``$LGPD_POLICY_FILE``.
    :param audit_conn_id: the audit store's Airflow connection (default ``lgpd_audit``,
        falling back to ``$LGPD_AUDIT_URL``).

    Every statement is checked by the guard and audited under the task instance's identity.
    Results are masked before they are returned (and so before XCom). The log shows each
    statement's normalised text (literals replaced) and row counts, never values or rows.
    A refused statement fails the task without retry (``AirflowFailException``) naming
    the rule and scope; an unreachable audit store fails it with retry (``AirflowException``).
    """

    template_fields: Sequence[str] = (*SQLExecuteQueryOperator.template_fields, "scope")
    ui_color = "#b9e3c6"

    def __init__(
        self,
        *,
        scope: str,
        policy: str | os.PathLike[str] | None = None,
        audit_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scope = scope
        self.policy = os.fspath(policy) if policy is not None else None
        self.audit_conn_id = audit_conn_id
        self._lgpd_context: Mapping[str, Any] | None = None

    # -- the seam ------------------------------------------------------------------------

    def load_policy(self) -> Policy:
        return load_task_policy(self.policy)

    def guard_settings(
        self, context: Mapping[str, Any], identity: TaskIdentity | None = None
    ) -> GuardSettings:
        """Policy, scope, identity and stores for the running task instance (run time only).

        The identity is the task instance in ``context``: this operator's own, or that of a
        Python task calling ``get_db_hook()``, which is the one running the statements.
        """
        policy = self.load_policy()
        with translate_errors():
            scope = policy.scope(self.scope)
            store = audit_store(self.audit_conn_id)
            store.ensure_ready()
            masker = Masker.from_policy(policy)
        return GuardSettings(
            policy=policy,
            scope=scope,
            identity=identity or task_identity(context),
            audit=store,
            masker=masker,
        )

    def get_db_hook(self) -> DbApiHook:
        """The connection's own hook, guarded: ``run``, ``get_records``, ``get_df``... included."""
        hook = super().get_db_hook()
        context = self._running_context()
        if isinstance(hook, GuardedHookMixin):
            # the cached hook stays bound to the task instance that is running statements
            if hook.lgpd_identity != task_identity(context):
                hook.rebind(self.guard_settings(context))
            return hook
        return guard_hook(hook, self.guard_settings(context))

    def _running_context(self) -> Mapping[str, Any]:
        """The context of the task instance running now (this one or a Python task)."""
        try:
            return get_current_context()
        except Exception:  # outside Airflow's task runner: the context execute() was given
            if self._lgpd_context is None:
                raise LgpdConfigurationError(
                    f"{self.task_id}: get_db_hook() needs a running task instance, "
                    "whose identity its statements are recorded under"
                ) from None
            return self._lgpd_context

    # -- rendering -----------------------------------------------------------------------

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render as usual, then hide the SQL's literal values from rendered fields and logs.

        Airflow stores rendered template fields for the UI and redacts registered secrets
        from them and from task logs; string literals of the rendered SQL and string
        parameters are registered, so neither the "Rendered Template" view nor a log line
        shows them.
        """
        super().render_template_fields(context, jinja_env)
        hide_literals(self.sql, self.parameters)

    def _do_render_template_fields(
        self, parent: Any, template_fields: Any, context: Any, jinja_env: Any, seen_oids: Any
    ) -> None:
        # a mapped task is rendered through this, not render_template_fields
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self:
            hide_literals(self.sql, self.parameters)

    # -- running -------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        self._lgpd_context = context
        self.log.info("Running SQL under lgpd-tasks scope %s", self.scope)
        hook = self.get_db_hook()
        extra: dict[str, Any] = {}
        if self.split_statements is not None:
            extra["split_statements"] = self.split_statements
        fetch = self._should_run_output_processing() or self.requires_result_fetch
        output = hook.run(
            sql=self.sql,
            autocommit=self.autocommit,
            parameters=self.parameters,
            handler=self.handler if fetch else None,
            return_last=self.return_last,
            **extra,
        )
        if not self._should_run_output_processing():
            return None
        if return_single_query_results(self.sql, self.return_last, self.split_statements):
            return self._process_output([output], hook.descriptions)[-1]
        return self._process_output(list(output or []), hook.descriptions)

    def _process_output(
        self, results: list[Any], descriptions: list[Sequence[Sequence[Any]] | None]
    ) -> Any:
        # the rows are masked already; the log still gets only their shape
        if self.show_return_value_in_logs:
            rows = [len(r) if isinstance(r, list) else int(r is not None) for r in results]
            self.log.info(
                "Operator output: %d result set(s) with %s row(s); values are not logged",
                len(results),
                rows,
            )
        return self._output_processor(results, descriptions)
