"""The audit: hash-chained records of statements, masking steps and approvals."""

from lgpd_tasks.audit.engine import dispose_engines, get_engine, parse_db_url, redact_url
from lgpd_tasks.audit.store import (
    GENESIS,
    AuditEntry,
    AuditRecord,
    AuditStore,
    EntryFilter,
    NewEntry,
    Verification,
    record_hash,
    scrub_text,
)

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditRecord",
    "AuditStore",
    "EntryFilter",
    "NewEntry",
    "Verification",
    "dispose_engines",
    "get_engine",
    "parse_db_url",
    "record_hash",
    "redact_url",
    "scrub_text",
]
