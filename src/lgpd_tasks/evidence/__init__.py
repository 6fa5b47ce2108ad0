"""Evidence from the audit: the subject trail, reports, export to object storage, purge."""

from lgpd_tasks.evidence.subjects import (
    StatementTrail,
    SubjectHasher,
    SubjectKey,
    SubjectTrail,
    normalize_subject,
    subject_keys,
    trail_key,
)

__all__ = [
    "StatementTrail",
    "SubjectHasher",
    "SubjectKey",
    "SubjectTrail",
    "normalize_subject",
    "subject_keys",
    "trail_key",
]
