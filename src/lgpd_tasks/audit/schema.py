"""The audit database's tables (SQLAlchemy Core), shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 1

metadata = MetaData()

_Seq = BigInteger().with_variant(Integer(), "sqlite")

#: Key/value facts about the store itself (schema version, export positions...).
meta = Table(
    "lgpd_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: The append-only, hash-chained audit log. Rows are never updated: a statement writes an
#: ``intent`` entry before it runs and an ``outcome`` entry (``ref`` = the intent) after.
audit_log = Table(
    "lgpd_audit_log",
    metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("record_id", String(36), nullable=False, unique=True),
    Column("ts", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("ref", String(36)),
    Column("orchestrator", String(32), nullable=False),
    Column("pipeline", String(250), nullable=False),
    Column("task", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("principal", String(500), nullable=False),
    Column("scope", String(250)),
    Column("purpose", String(250)),
    Column("legal_basis", String(64)),
    Column("decision", String(16)),
    Column("fingerprint", String(64)),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # a fork of the chain (two writers extending the same head) is refused by the database
    UniqueConstraint("prev_hash", name="uq_lgpd_audit_prev_hash"),
)
Index("ix_lgpd_audit_run", audit_log.c.pipeline, audit_log.c.run_id, audit_log.c.task)
Index("ix_lgpd_audit_ref", audit_log.c.ref)

approval_requests = Table(
    "lgpd_approval_requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("pipeline", String(250), nullable=False),
    Column("task", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("scope", String(250), nullable=False),
    Column("purpose", String(250), nullable=False),
    Column("statement_kind", String(32), nullable=False),
    Column("normalized", Text, nullable=False),
    Column("reasons", Text, nullable=False),
    Column("requested_by", String(500), nullable=False),
    Column("requested_user", String(250)),
    Column("requested_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("min_approvers", Integer, nullable=False),
    Column("decided_at", String(32)),
    Column("consumed_at", String(32)),
    Column("consumed_by", String(500)),
)
Index(
    "ix_lgpd_approval_key",
    approval_requests.c.fingerprint,
    approval_requests.c.pipeline,
    approval_requests.c.task,
)
Index("ix_lgpd_approval_status", approval_requests.c.status)

approval_decisions = Table(
    "lgpd_approval_decisions",
    metadata,
    Column("id", _Seq, primary_key=True, autoincrement=True),
    Column("request_id", String(40), nullable=False, index=True),
    Column("approver", String(250), nullable=False),
    Column("verified", Boolean, nullable=False),
    Column("issuer", String(500)),
    Column("decision", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_at", String(32), nullable=False),
    UniqueConstraint("request_id", "approver", name="uq_lgpd_approval_once"),
)
