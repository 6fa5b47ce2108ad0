"""Who is running a statement: the task identity every audit record and approval carries."""

from __future__ import annotations

import getpass
import hashlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskIdentity:
    """One attempt of one task in one pipeline run.

    ``orchestrator`` is ``airflow``, ``dagster`` or ``cli``; ``pipeline`` is the DAG id or
    job name; ``task`` the task id, op or asset key; ``attempt`` the try number.
    ``principal`` is the identity that approvals and reports name, such as
    ``airflow:contractor_pipeline.extract`` or ``cli:maria``. A mapped task instance is told
    apart by ``map_index`` (Airflow) or ``mapping_key`` (a Dagster op downstream of a
    dynamic output): see :attr:`instance`.

    >>> ident = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1", attempt=2)
    >>> ident.principal
    'airflow:contractor.extract'
    >>> ident.attempt_key
    'airflow:contractor.extract:manual__1:2'
    """

    orchestrator: str
    pipeline: str
    task: str
    run_id: str = ""
    attempt: int = 1
    map_index: int | None = None
    partition: str | None = None
    user: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    mapping_key: str | None = None

    @property
    def instance(self) -> str | None:
        """Which mapped instance of the task this is, or None for a task that is not mapped.

        >>> TaskIdentity("airflow", "d", "t", map_index=3).instance
        '3'
        >>> TaskIdentity("dagster", "j", "op", mapping_key="sp").instance
        'sp'
        """
        if self.map_index is not None and self.map_index >= 0:
            return str(self.map_index)
        return self.mapping_key

    @property
    def principal(self) -> str:
        if self.orchestrator in ("cli", "approver"):
            return f"{self.orchestrator}:{self.user or self.task}"
        return f"{self.orchestrator}:{self.pipeline}.{self.task}"

    @property
    def attempt_key(self) -> str:
        """A string unique to this attempt (used to name per-attempt database roles)."""
        parts = [self.principal, self.run_id, str(self.attempt)]
        if self.map_index is not None and self.map_index >= 0:
            parts.append(f"m{self.map_index}")
        if self.mapping_key is not None:
            parts.append(f"k{self.mapping_key}")
        if self.partition:
            parts.append(f"p{self.partition}")
        return ":".join(parts)

    @property
    def attempt_hash(self) -> str:
        return hashlib.sha256(self.attempt_key.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["principal"] = self.principal
        return data

    @classmethod
    def for_cli(cls, name: str | None = None) -> TaskIdentity:
        """The identity of a person running ``lgpd-tasks exec`` (``cli:<name>``)."""
        os_user = _os_user()
        who = name or os_user
        return cls(
            orchestrator="cli",
            pipeline="cli",
            task=who,
            run_id="cli",
            user=who,
            extra={"os_user": os_user},
        )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())
