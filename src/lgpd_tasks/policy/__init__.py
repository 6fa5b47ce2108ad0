"""The policy file: purposes, scopes (what each task may touch), masking and approval settings."""

from lgpd_tasks.policy.loader import POLICY_ENV, load_policy, parse_policy, policy_from_document
from lgpd_tasks.policy.model import ApprovalTrigger, LegalBasis, parse_duration
from lgpd_tasks.policy.names import default_schema, normalize_identifier, normalize_table_name
from lgpd_tasks.policy.policy import ALL, Grants, Policy, Purpose, Scope

__all__ = [
    "ALL",
    "POLICY_ENV",
    "ApprovalTrigger",
    "Grants",
    "LegalBasis",
    "Policy",
    "Purpose",
    "Scope",
    "default_schema",
    "load_policy",
    "normalize_identifier",
    "normalize_table_name",
    "parse_duration",
    "parse_policy",
    "policy_from_document",
]
