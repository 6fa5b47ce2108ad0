"""The audit database's tables (SQLAlchemy Core), shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 5
"""1: log, approvals, meta. 2: subject trail and export positions (tables added, none changed).
3: subject digests and links packed in blocks (the version 2 trail tables are folded in).
4: approval requests record the partition they were asked for (``partition_key``).
5: and the mapped task instance (``map_key``: Airflow's map index, Dagster's mapping key),
   and a salted digest of the values they were asked for (``bound_values``)."""

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
    # version 4: the partition of the run that asked; an approval admits that partition only
    Column("partition_key", String(250)),
    # version 5: the mapped instance that asked; an approval admits that instance only
    Column("map_key", String(250)),
    # version 5: scrypt digest of the statement text and parameters (approvals/values.py)
    Column("bound_values", String(200)),
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


# -- version 2: the subject trail and the export positions ---------------------------------
# Digests are 16 bytes: the first 128 bits of an HMAC-SHA256. Only the key protects them (a
# CPF has 10^9 possible values); 128 bits keep accidental collisions out of reach (about
# 10^-20 for a billion people) at half the size of the full digest.

#: One row per statement over a table with a subject key: how its subjects were known.
subject_access = Table(
    "lgpd_subject_access",
    metadata,
    # the intent record's ``record_id`` as the 16 bytes of its UUID
    Column("access", LargeBinary(16), primary_key=True),
    Column("tables", Text, nullable=False),
    # rows (result rows), where (keys named in the WHERE), values (INSERT values),
    # returning, or none (the statement touched the table but its subjects are unknown)
    Column("coverage", String(16), nullable=False),
)

# -- version 3: digests packed in blocks instead of one indexed row per subject ------------
# A 1,000,000-row extract wrote a million index entries per statement; a block holds up to
# 262,144 digests of one statement as one blob (16 bytes each, in no particular order). A
# data-subject report, which is rare, finds a digest by scanning blobs (``instr`` on SQLite,
# ``position`` on PostgreSQL, then an alignment check), while extracts, which are constant,
# write one row per block.

#: The subjects (keyed digests) of the rows a statement returned or changed, in blocks.
subject_digests = Table(
    "lgpd_subject_digests",
    metadata,
    Column("access", LargeBinary(16), nullable=False),
    Column("part", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    # ``count`` 16-byte digests, concatenated
    Column("digests", LargeBinary, nullable=False),
    PrimaryKeyConstraint("access", "part", name="pk_lgpd_subject_digests"),
)

#: Primary-key digest -> subject digest, learnt when both were seen in one row: blocks of
#: 32-byte pairs (primary-key digest then subject digest). Not tied to a statement, so a
#: purge keeps them: later statements that name only the key still lead to the person.
subject_links = Table(
    "lgpd_subject_link_blocks",
    metadata,
    Column("id", _Seq, primary_key=True, autoincrement=True),
    Column("count", Integer, nullable=False),
    Column("links", LargeBinary, nullable=False),
)

#: Tables of version 2 that an upgrade to 3 folds into the blocks above, then drops.
V2_TRAIL_TABLES = ("lgpd_subject_trail", "lgpd_subject_links")

#: How far each export target has received the chain (``audit export`` resumes from here).
exports = Table(
    "lgpd_exports",
    metadata,
    Column("target", String(500), primary_key=True),
    Column("last_seq", _Seq, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("exported_at", String(32), nullable=False),
    Column("manifest", String(1000), nullable=False),
)
