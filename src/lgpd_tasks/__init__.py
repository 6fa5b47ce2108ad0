"""lgpd-tasks."""
