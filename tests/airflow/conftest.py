"""Airflow test harness: one migrated metadata database per session, DAGs run with dag.test().

Airflow reads its configuration when it is first imported, so the environment is set here,
before any test module imports it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="lgpd-airflow-home-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
(_HOME / "dags").mkdir()
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(_HOME / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__XCOM_BACKEND": "lgpd_tasks_airflow.xcom.LgpdMaskingXComBackend",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
    }
)

POLICY = Path(__file__).with_name("policy.yaml")
CPFS = ["529.982.247-25", "111.444.777-35", "390.533.447-05"]
EMAILS = ["maria.silva@example.com.br", "joao.souza@gov.br", "ana.lima@uol.com.br"]


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata database, created once per session."""
    from airflow.utils import db

    db.resetdb(skip_init=False)
    return _HOME / "airflow.db"


def make_source(path: Path) -> Path:
    """A small CRM database with synthetic personal data (check-digit-valid CPFs)."""
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE customers (id INTEGER PRIMARY KEY, nome TEXT, cpf TEXT, email TEXT,
                                    telefone TEXT, cidade TEXT, created_at TEXT);
            CREATE TABLE customer_summary (cidade TEXT, clientes INTEGER);
            CREATE TABLE staging_orders (id INTEGER PRIMARY KEY, created_at TEXT);
            """
        )
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    1,
                    "Maria Silva",
                    CPFS[0],
                    EMAILS[0],
                    "(11) 91234-5678",
                    "São Paulo",
                    "2024-01-02",
                ),
                (
                    2,
                    "João Souza",
                    CPFS[1],
                    EMAILS[1],
                    "(21) 99876-5432",
                    "Rio de Janeiro",
                    "2024-02-03",
                ),
                (3, "Ana Lima", CPFS[2], EMAILS[2], "(31) 98765-4321", "São Paulo", "2024-03-04"),
            ],
        )
        conn.executemany(
            "INSERT INTO staging_orders VALUES (?, ?)",
            [(i, f"2023-0{1 + i % 9}-01") for i in range(1, 11)],
        )
    return path


class Env:
    """One test's world: source database, audit store, policy and Airflow connection."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp_path
        self.source = make_source(tmp_path / "source.db")
        self.policy_file = POLICY
        self.audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
        self.dag_id = f"t_{uuid.uuid4().hex[:10]}"
        monkeypatch.setenv("LGPD_POLICY_FILE", str(POLICY))
        monkeypatch.setenv("LGPD_AUDIT_URL", self.audit_url)
        monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret")
        monkeypatch.setenv(
            "AIRFLOW_CONN_CRM", f'{{"conn_type": "sqlite", "host": "{self.source}"}}'
        )

    def audit(self) -> Any:
        from lgpd_tasks.audit import AuditStore

        return AuditStore.from_url(self.audit_url)

    def approvals(self) -> Any:
        from lgpd_tasks.approvals import ApprovalStore

        return ApprovalStore(self.audit())

    def run(self, dag: Any, **test_kwargs: Any) -> Any:
        """Serialise ``dag`` into the metadata database (as the DAG processor would), test it."""
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

        DagBundlesManager().sync_bundles_to_db()
        bag = DagBag(dag_folder=os.devnull)
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
        return dag.test(**test_kwargs)

    @contextmanager
    def approver(self, verb: str = "approve", reason: str = "") -> Iterator[list[str]]:
        """A person deciding every pending request of this test's DAG while the run waits."""
        from lgpd_tasks.approvals import Approver, Status

        decided: list[str] = []
        stop = threading.Event()
        store = self.approvals()

        def decide() -> None:
            while not stop.is_set():
                for request in store.list_requests(status=Status.PENDING, pipeline=self.dag_id):
                    who = Approver("ana.aprovadora")
                    if verb == "approve":
                        store.approve(request.id, who, reason)
                    else:
                        store.deny(request.id, who, reason)
                    decided.append(request.id)
                stop.wait(0.3)

        thread = threading.Thread(target=decide, daemon=True)
        thread.start()
        try:
            yield decided
        finally:
            stop.set()
            thread.join()

    def staging_rows(self) -> int:
        with sqlite3.connect(self.source) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM staging_orders").fetchone()[0])

    def states(self, run: Any) -> dict[str, tuple[str, int]]:
        """task id -> (state, try number) of a finished run."""
        from airflow.utils.session import create_session

        with create_session() as session:
            return {
                ti.task_id: (str(ti.state), int(ti.try_number))
                for ti in run.get_task_instances(session=session)
            }

    def rendered_fields(self) -> str:
        """Every rendered template field Airflow stored for this DAG (what the UI shows)."""
        with sqlite3.connect(_HOME / "airflow.db") as conn:
            return "\n".join(
                str(r[0])
                for r in conn.execute(
                    "SELECT rendered_fields FROM rendered_task_instance_fields WHERE dag_id = ?",
                    (self.dag_id,),
                )
            )

    def xcom_rows(self) -> list[tuple[str, str, str]]:
        """(task id, key, stored value) straight from the metadata database's xcom table."""
        with sqlite3.connect(_HOME / "airflow.db") as conn:
            return [
                (str(t), str(k), str(v))
                for t, k, v in conn.execute(
                    "SELECT task_id, key, value FROM xcom WHERE dag_id = ?", (self.dag_id,)
                )
            ]


@pytest.fixture
def env(airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    return Env(tmp_path, monkeypatch)
