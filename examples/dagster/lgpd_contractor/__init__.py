"""The contractor pipeline as Dagster assets, guarded and masked by lgpd-tasks.

Run it with ``dagster dev -m lgpd_contractor`` from ``examples/dagster`` (see README.md).
"""

from lgpd_contractor.definitions import defs

__all__ = ["defs"]
