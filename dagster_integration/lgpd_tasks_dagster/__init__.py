"""Dagster integration for lgpd-tasks: guarded database resource, masking IO manager, approvals."""
