"""GuardedDatabaseResource: a Dagster resource whose connections are guarded, masked and audited."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from lgpd_tasks.approvals import ApprovalStore, Status
from lgpd_tasks.audit import AuditStore, redact_url
from lgpd_tasks.connection import GuardedConnection, open_scoped
from lgpd_tasks.credentials import CredentialBroker, PostgresRoleBroker, broker_from_policy
from lgpd_tasks.errors import (
    ApprovalError,
    ApprovalRequired,
    AuditStoreUnusable,
    AuditUnavailable,
    LgpdError,
)
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.masking import Masker
from lgpd_tasks.policy import Policy, Scope, load_policy
from lgpd_tasks.policy.model import ApprovalsSpec
from lgpd_tasks.sql import Decision
from lgpd_tasks_dagster.errors import to_failure
from lgpd_tasks_dagster.identity import (
    APPROVAL_TAG,
    GATED_RUN_TAG,
    current_context,
    identity_from_context,
    relaunch_identity,
)
from lgpd_tasks_dagster.lineage import (
    COLUMN_SCHEMA,
    lineage_metadata,
    schema_from_columns,
    schema_from_frame,
)

#: The asset whose dynamic partitions list approval requests in the UI.
APPROVALS_ASSET = "lgpd_approvals"
APPROVALS_PARTITIONS = "lgpd_approval_requests"


class GuardedDatabaseResource(dg.ConfigurableResource["GuardedDatabaseResource"]):
    """A database connection per op or asset, scoped, guarded, masked and audited.

    Every statement goes through the lgpd-tasks guard in the op's scope, is recorded in the
    audit store with the op's identity (job, op or asset key, run, step, partition, retry),
    and its results come back masked. Refusals fail the op with an
    :class:`~lgpd_tasks_dagster.errors.LgpdFailure`; an audit-store outage asks Dagster to
    retry the step.

    .. code-block:: python

        @asset
        def customers(lgpd: GuardedDatabaseResource) -> pd.DataFrame:
            return lgpd.query_df("SELECT id, cpf, cidade FROM crm.customers")

        Definitions(
            assets=[customers],
            resources={"lgpd": GuardedDatabaseResource(
                policy_file="policy.yaml", scope="customer_report.extract",
                database_url=EnvVar("CRM_DATABASE_URL"), audit_url=EnvVar("LGPD_AUDIT_URL"),
            )},
        )
    """

    database_url: str = Field(
        description=(
            "Target database, sqlite:///path.db or postgresql://user:password@host:port/db. "
            "Holds a password: set it with EnvVar so the UI never shows it. When the policy "
            "sets credentials.broker: postgres_role, steps log in as per-attempt roles "
            "instead, and this login is the broker's administrator unless "
            "admin_database_url (or the policy's credentials.admin_url_env) names another."
        )
    )
    admin_database_url: str | None = Field(
        default=None,
        description=(
            "Administrator URL for the PostgreSQL role broker (credentials.broker: "
            "postgres_role), postgresql://admin:password@host:port/db, same database as "
            "database_url; needs CREATEROLE and the right to grant on the scope's tables. "
            "Only the broker uses it, to create and drop each step's role; statements never "
            "run on it. Secret: set it with EnvVar. Unused with the static broker."
        ),
    )
    audit_url: str = Field(
        description=(
            "Audit and approvals store, sqlite:///audit.db or postgresql://...; statements do "
            "not run when it cannot record. Use EnvVar when the URL holds a password."
        )
    )
    policy_file: str | None = Field(
        default=None,
        description="Path of the lgpd-tasks policy file (YAML); unset reads $LGPD_POLICY_FILE.",
    )
    scope: str | None = Field(
        default=None,
        description=(
            "Default policy scope for statements; get_connection(scope=...), query_df and "
            "execute may name another one."
        ),
    )
    masking_key: str | None = Field(
        default=None,
        description=(
            "HMAC key for masking. Secret: set it with EnvVar. Unset reads the environment "
            "variable the policy's masking.key_env names."
        ),
    )
    approvers: list[str] = Field(
        default_factory=list,
        description=(
            "Who may approve, added to the policy's approvals.approvers: names (recorded as "
            "unverified when the policy has no approvals.oidc) or group:NAME (groups of a "
            "verified OIDC token)."
        ),
    )
    table_asset_keys: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Source table -> asset key (a/b/c) for column lineage in the UI; tables not "
            "listed map to their dotted name as an asset key path."
        ),
    )
    audit_retries: int = Field(
        default=3,
        ge=0,
        description="How many times a step is retried when the audit store cannot record.",
    )
    audit_retry_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Seconds to wait before retrying a step after an audit-store outage.",
    )

    _policy: Policy | None = PrivateAttr(default=None)
    _audit: AuditStore | None = PrivateAttr(default=None)
    _masker: Masker | None = PrivateAttr(default=None)
    _broker: CredentialBroker | None = PrivateAttr(default=None)
    _decisions: dict[tuple[str, str], list[Decision]] = PrivateAttr(default_factory=dict)

    # -- the configured pieces ----------------------------------------------------------------

    def load_policy(self) -> Policy:
        """The policy file, loaded once per resource instance."""
        if self._policy is None:
            with self._as_failures():
                self._policy = load_policy(self.policy_file)
        return self._policy

    def audit_store(self) -> AuditStore:
        if self._audit is None:
            self._audit = AuditStore.from_url(self.audit_url)
        return self._audit

    def approval_rules(self) -> ApprovalsSpec:
        """The policy's ``approvals`` rules, with the resource's ``approvers`` added."""
        rules = self.load_policy().approvals
        extra = [a for a in self.approvers if a not in rules.approvers]
        if extra:
            rules = rules.model_copy(update={"approvers": [*rules.approvers, *extra]})
        return rules

    def approval_store(self) -> ApprovalStore:
        """The approvals store, deciding under :meth:`approval_rules` (who may approve)."""
        return ApprovalStore(self.audit_store(), self.approval_rules())

    def masker(self) -> Masker:
        """The masker for the policy's masking rules, keyed by ``masking_key`` or the env."""
        if self._masker is None:
            with self._as_failures():
                key = self.masking_key.encode() if self.masking_key else None
                self._masker = Masker.from_policy(self.load_policy(), key=key)
        return self._masker

    def credential_broker(self) -> CredentialBroker:
        """The broker the policy's ``credentials:`` asks for, made once per resource instance."""
        if self._broker is None:
            with self._as_failures():
                self._broker = broker_from_policy(
                    self.load_policy(), self.database_url, admin_url=self.admin_database_url
                )
        return self._broker

    def close(self) -> None:
        """Close the role broker's administrator connection (issued roles are already gone)."""
        broker, self._broker = self._broker, None
        if isinstance(broker, PostgresRoleBroker):
            broker.close()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def bound_scope(self, scope: str | Scope | None = None) -> Scope:
        if isinstance(scope, Scope):
            return scope
        name = scope or self.scope
        if not name:
            raise to_failure(
                LgpdError("no scope: set the resource's 'scope' or pass scope=... to the call")
            )
        with self._as_failures():
            return self.load_policy().scope(name)

    def redacted_database_url(self) -> str:
        return redact_url(self.database_url)

    # -- connections --------------------------------------------------------------------------

    @contextmanager
    def get_connection(
        self, scope: str | Scope | None = None, *, identity: TaskIdentity | None = None
    ) -> Iterator[GuardedConnection]:
        """A GuardedConnection for the running op or asset, committed and closed on exit.

        Refusals inside the block raise :class:`LgpdFailure` subclasses; an audit outage
        raises ``RetryRequested``.
        """
        context = current_context() if identity is None else None
        with self._as_failures(context):
            bound = self.bound_scope(scope)
            if identity is None:
                assert context is not None
                identity = self._identity(context)
            conn = self._open(bound, identity, context)
            with conn:
                yield conn

    def query_df(
        self, sql: str, parameters: Any = None, *, scope: str | Scope | None = None
    ) -> pd.DataFrame:
        """Run a query and return its masked result; adds column schema and lineage metadata."""
        with self.get_connection(scope) as conn:
            df = conn.query_df(sql, parameters)
        self._add_output_metadata(current_context(), {COLUMN_SCHEMA: schema_from_frame(df)})
        return df

    def execute(self, sql: str, parameters: Any = None, *, scope: str | Scope | None = None) -> int:
        """Run one statement and commit; returns the row count."""
        with self.get_connection(scope) as conn:
            cur = conn.execute(sql, parameters)
            try:
                return cur.rowcount
            finally:
                cur.close()

    def executemany(
        self, sql: str, seq_of_parameters: Iterable[Any], *, scope: str | Scope | None = None
    ) -> int:
        """Run one statement for each parameter set and commit; returns the row count."""
        with self.get_connection(scope) as conn:
            cur = conn.executemany(sql, seq_of_parameters)
            try:
                return cur.rowcount
            finally:
                cur.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _identity(self, context: dg.OpExecutionContext) -> TaskIdentity:
        """This step's identity; the gated run's for a relaunch that continues it.

        The relaunch tags are only a claim (anyone may launch a run with them): the run
        continues the gated run only when that run is in this instance and has the same
        partition and run config, so an approval given for one partition or config never
        admits a run of another. Otherwise the step keeps its own identity and needs its
        own approval.
        """
        identity = identity_from_context(context)
        request_id = context.run.tags.get(APPROVAL_TAG)
        if not request_id:
            return identity
        try:
            request = self.approval_store().get(request_id)
        except ApprovalError:
            return identity
        gated_run = context.run.tags.get(GATED_RUN_TAG)
        if request.task != identity.task or request.run_id != gated_run:
            return identity
        problem = _relaunch_mismatch(context, request.run_id, request.partition)
        if problem is not None:
            context.log.warning(
                f"lgpd-tasks: this run is tagged as the relaunch of run {request.run_id} "
                f"approved in {request.id}, but {problem}; the approval is not used here"
            )
            return identity
        return relaunch_identity(identity, request.pipeline, request.run_id)

    def _open(
        self, scope: Scope, identity: TaskIdentity, context: dg.OpExecutionContext | None
    ) -> GuardedConnection:
        policy = self.load_policy()
        audit = self.audit_store()
        audit.ensure_ready()
        masker = self.masker()

        def seen(decision: Decision) -> None:
            if context is not None:
                self._record_lineage(context, decision)

        opened = open_scoped(
            self.database_url,
            policy=policy,
            scope=scope,
            identity=identity,
            broker=self.credential_broker(),
        )
        try:
            return GuardedConnection(
                opened.raw,
                on_statement=seen,
                driver=opened.driver,
                policy=policy,
                scope=scope,
                identity=identity,
                audit=audit,
                approvals=ApprovalStore(audit, self.approval_rules()),
                masker=masker,
                role=opened.role,
                on_close=opened.revoke,
                target=self.redacted_database_url(),
            )
        except BaseException:
            opened.discard()
            raise

    def _record_lineage(self, context: dg.OpExecutionContext, decision: Decision) -> None:
        step = context.get_step_execution_context().step.key
        seen = self._decisions.setdefault((context.run_id, step), [])
        seen.append(decision)
        metadata: dict[str, Any] = lineage_metadata(seen, self.table_asset_keys)
        queries = [s for s in decision.statements if s.kind == "select" and s.output_columns]
        if queries:
            metadata[COLUMN_SCHEMA] = schema_from_columns(queries[-1].output_columns)
        self._add_output_metadata(context, metadata)

    @staticmethod
    def _add_output_metadata(context: dg.OpExecutionContext, metadata: dict[str, Any]) -> None:
        if not metadata or len(context.op_def.output_defs) != 1:
            return  # metadata needs one output to attach to; multi-output ops add their own
        try:
            context.add_output_metadata(metadata)
        except dg.DagsterInvariantViolationError:
            context.log.debug("lgpd-tasks: output already emitted, lineage metadata not added")

    @contextmanager
    def _as_failures(self, context: dg.OpExecutionContext | None = None) -> Iterator[None]:
        """Core refusals become Dagster failures; audit outages become step retries."""
        try:
            yield
        except AuditStoreUnusable as err:
            raise to_failure(err) from err  # a wrong URL: retrying cannot mend it
        except AuditUnavailable as err:
            if context is not None:
                context.log.warning(f"lgpd-tasks: {err}; the step will be retried")
            raise dg.RetryRequested(
                max_retries=self.audit_retries, seconds_to_wait=self.audit_retry_wait_seconds
            ) from err
        except LgpdError as err:
            if isinstance(err, ApprovalRequired) and context is not None:
                _show_request(context, self, err)
            raise to_failure(err) from err


def _relaunch_mismatch(
    context: dg.OpExecutionContext, gated_run_id: str, partition: str | None
) -> str | None:
    """Why this run does not continue the gated run, or ``None`` when it does."""
    gated = context.instance.get_run_by_id(gated_run_id)
    if gated is None:
        return "that run is not in this Dagster instance"
    current = context.partition_key if context.has_partition_key else None
    if current != partition:
        return f"the approval is for partition {partition!r} and this run is for {current!r}"
    for tag in RELAUNCH_PARTITION_TAGS:
        if context.run.tags.get(tag) != gated.tags.get(tag):
            return f"its {tag} tag differs from the gated run's"
    if _config_digest(context.run.run_config) != _config_digest(gated.run_config):
        return "its run config differs from the gated run's"
    return None


def _config_digest(config: Any) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


#: The run tags that say which partitions a run materialises (the relaunch keeps them).
RELAUNCH_PARTITION_TAGS = (
    "dagster/partition",
    "dagster/asset_partition_range_start",
    "dagster/asset_partition_range_end",
)


def _show_request(
    context: dg.OpExecutionContext, resource: GuardedDatabaseResource, err: ApprovalRequired
) -> None:
    """Make a pending request visible in the UI as a partition of ``lgpd_approvals``."""
    try:
        request = resource.approval_store().get(err.request_id)
        if request.status is not Status.PENDING:
            return
        context.instance.add_dynamic_partitions(APPROVALS_PARTITIONS, [request.id])
        context.log_event(
            dg.AssetObservation(
                asset_key=APPROVALS_ASSET,
                partition=request.id,
                metadata=request_metadata(request.to_dict()),
            )
        )
    except Exception as problem:  # the request is in the store; the UI entry is a convenience
        context.log.warning(f"lgpd-tasks: could not list {err.request_id} in the UI: {problem}")


def request_metadata(request: dict[str, Any]) -> dict[str, Any]:
    """An approval request as UI metadata: status, statement (no literal values), who, when."""
    return {
        "status": str(request["status"]),
        "request_id": str(request["id"]),
        "pipeline": str(request["pipeline"]),
        "task": str(request["task"]),
        "run_id": str(request["run_id"]),
        "scope": str(request["scope"]),
        "statement": dg.MetadataValue.md(f"```sql\n{request['normalized']}\n```"),
        "requested_by": str(request["requested_by"]),
        "expires_at": str(request["expires_at"]),
        "reasons": dg.MetadataValue.json(list(request["reasons"])),
    }


__all__: Sequence[str] = ["APPROVALS_ASSET", "APPROVALS_PARTITIONS", "GuardedDatabaseResource"]
