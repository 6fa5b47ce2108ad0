"""Subcommands of the ``lgpd-tasks`` command, one module each."""
